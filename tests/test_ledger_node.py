"""The ledger against a real JSON-RPC node (ganache 7) started on 127.0.0.1 by the test; skipped without one.

The node is looked for at $COLEARN_GANACHE, then ~/.cache/colearn-node/node_modules/.bin/ganache (where
``npm install --prefix ~/.cache/colearn-node ganache@7.9.2`` puts it), then on PATH.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from eth_account import Account  # noqa: E402

from colearn.backends.base import Failure  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.ledger.audit import audit  # noqa: E402
from colearn.ledger.backend import LedgerBackend  # noqa: E402
from colearn.ledger.chain import LedgerError, LedgerRevert, rpc_chain  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.runner import RunConfig, run  # noqa: E402
from tests.learners import PlusOneLearner  # noqa: E402
from tests.test_ledger_backend import comparable  # noqa: E402
from tests.test_ledger_learners import register_softmax  # noqa: E402

pytestmark = pytest.mark.slow
N_KEYS = 4


def find_ganache() -> str | None:
    candidates = [os.environ.get("COLEARN_GANACHE"),
                  str(Path.home() / ".cache" / "colearn-node" / "node_modules" / ".bin" / "ganache"),
                  shutil.which("ganache")]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """(url, keys file): a ganache node on 127.0.0.1 funding N_KEYS throw-away keys; stopped afterwards."""
    binary = find_ganache()
    if binary is None or shutil.which("node") is None:
        pytest.skip("no ganache: npm install --prefix ~/.cache/colearn-node ganache@7.9.2 (or set COLEARN_GANACHE)")
    keys = ["0x" + hashlib.sha256(f"colearn-node-test:{i}".encode()).hexdigest() for i in range(N_KEYS)]
    port = free_port()
    command = [binary, "--server.host", "127.0.0.1", "--server.port", str(port), "--logging.quiet",
               "--chain.hardfork", "shanghai", "--miner.instamine", "strict"]
    for key in keys:
        command += ["--wallet.accounts", f"{key},{10**24}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.skip(f"ganache did not start: {process.stderr.read().decode()[-300:]}")
            try:
                rpc_chain(url, timeout=5)
                break
            except LedgerError:
                if time.monotonic() > deadline:
                    pytest.skip("ganache did not answer within 90 s")
                time.sleep(0.5)
        keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        yield url, keys_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_run_on_the_node_equals_the_local_run_and_passes_the_audit(node, tmp_path):
    url, keys_file = node
    base = dict(learner=register_softmax(), n_learners=3, n_rounds=2, seed=4)
    local = run(RunConfig(**base))
    options = {"rpc_url": url, "keys_file": str(keys_file), "workdir": str(tmp_path / "ledger")}
    ledger = run(RunConfig(**base, backend="ledger", backend_options=options))
    assert comparable(ledger) == comparable(local)
    assert ledger.extra["ledger"]["chain"] == "rpc"
    text = ledger.to_json()
    assert url not in text and str(keys_file) not in text
    export = (tmp_path / "ledger" / "ledger.json").read_text()
    assert url not in export and "journal" not in json.loads(export)
    assert not any(k in export for k in keys_file.read_text().split())
    report = audit(tmp_path / "ledger" / "ledger.json", results=ledger, rpc_url=url)
    assert report.ok, report.problems
    assert len(report.accepted) == ledger.n_accepted
    with pytest.raises(LedgerError, match="rpc-url"):
        audit(tmp_path / "ledger" / "ledger.json")


def test_reverts_and_the_deadline_on_the_node(node, tmp_path, monkeypatch):
    url, keys_file = node
    accounts = [Account.from_key(k) for k in keys_file.read_text().split()[:3]]
    learners = [PlusOneLearner() for _ in range(3)]
    backend = LedgerBackend(learners, chain=rpc_chain(url), accounts=accounts, blob_dir=tmp_path, vote_period=5)
    with pytest.raises(LedgerRevert, match="not the proposer of this round"):
        backend.chain.send(accounts[1], backend.contract.functions.propose(0, b"\x01" * 32))
    monkeypatch.setattr(backend.agents[2], "vote", lambda r: Failure(2, "crashed", "crashed"))
    config = ProtocolConfig().model_copy(update={"selector": backend.selector})
    record = Experiment(backend, config).run_round()  # learner 2 is silent: finalize waits for the deadline
    assert record.accepted is True and record.votes == [None, True, None]
    assert backend.rounds[0]["abstentions"] == 1
    assert [learner.value for learner in learners] == [1, 1, 1]
