"""The ledger against a real JSON-RPC node (ganache 7) started on 127.0.0.1 by the test; skipped without one.

The node is looked for at $COLEARN_GANACHE, then ~/.cache/colearn-node/node_modules/.bin/ganache (where
``npm install --prefix ~/.cache/colearn-node ganache@7.9.2`` puts it), then on PATH.
"""
from __future__ import annotations

import json

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
from tests.agent_helpers import ganache_or_skip  # noqa: E402
from tests.learners import PlusOneLearner  # noqa: E402
from tests.test_ledger_backend import comparable  # noqa: E402
from tests.test_ledger_learners import register_softmax  # noqa: E402

pytestmark = pytest.mark.slow
N_KEYS = 4


@pytest.fixture(scope="module")
def node():
    """(url, keys file) of a ganache node on 127.0.0.1 (stopped afterwards); skipped without ganache."""
    yield from ganache_or_skip(N_KEYS, "colearn-node-test")


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
    assert backend.rounds[0]["abstentions"] == 1 and backend.rounds[0]["accepted"] is True
    assert record.votes == [None, True, None]
    assert [learner.value for learner in learners] == [1, 1, 1]
