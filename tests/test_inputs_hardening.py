"""Careless or hostile input to the real `colearn` command: one-line errors naming the key, never a traceback,
never a secret. Each case runs the console command in a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from colearn.redact import MASK, forget_secrets, redact, register_secret
from colearn.results import ExperimentResults

pytestmark = pytest.mark.timeout(300)


def colearn(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colearn.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error line; asserts exit status 2, no traceback, and that the error is a single line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


CONFIG_CASES: List[Tuple[str, str, Tuple[str, ...]]] = [
    ("yaml-syntax", "task: iris\nn_rounds: [1\n", ("not valid YAML", "line 3")),
    ("python-tag", 'task: !!python/object/apply:os.system ["touch PWNED"]\n', ("not valid YAML", "python/object")),
    ("bool-as-int", "n_rounds: true\n", ("n-rounds",)),
    ("negative-seed", "seed: -5\n", ("seed",)),
    ("string-timeout", "backend: processes\nbackend_options:\n  timeout: '10'\n", ("backend_options.timeout",)),
    ("unknown-option", "backend: processes\nbackend_options:\n  foo: 1\n", ("backend_options.foo", "processes")),
    ("options-on-local", "task: iris\nbackend_options:\n  timeout: 5\n", ("backend_options", "local backend")),
]


@pytest.mark.parametrize("name, text, named", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_files_are_one_line_errors_naming_the_key(tmp_path, name, text, named):
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    line = one_line_error(colearn("run", "--config", str(config), "--out", str(tmp_path / "out"), cwd=tmp_path))
    for word in named:
        assert word in line, line
    assert not (tmp_path / "PWNED").exists()  # the tag was refused, not constructed
    assert not (tmp_path / "out" / "results.json").exists()


def test_unknown_learner_parameter_is_named(tmp_path):
    line = one_line_error(colearn("run", "--task", "iris", "-p", "foo=1", "--n-rounds", "1", "--no-plots",
                                  "--out", str(tmp_path)))
    assert "learner_params.foo" in line and "'sgd'" in line


def test_too_many_learners_for_the_data_fails_before_any_worker_starts(tmp_path):
    started = time.monotonic()
    line = one_line_error(colearn("run", "--n-learners", "10000", "--backend", "processes", "--out", str(tmp_path)))
    assert "n_learners=10000" in line and time.monotonic() - started < 60


def _results_dict() -> dict:
    record = {"round_index": 0, "proposer": 1, "accepted": True, "votes": [True, None, False],
              "vote_errors": [None] * 3, "proposal_vote_scores": [0.5] * 3, "proposal_test_scores": [0.5] * 3,
              "held_vote_scores": [0.5] * 3, "held_test_scores": [0.5] * 3, "approvals": 1, "rejections": 1}
    return {"n_learners": 3, "initial_vote_scores": [0.1] * 3, "initial_test_scores": [0.1] * 3,
            "rounds": [record]}


def _corrupt(data: dict, case: str) -> dict:
    record = data["rounds"][0]
    if case == "proposer-99":
        record["proposer"] = 99
    elif case == "negative-learners":
        data["n_learners"] = -3
    elif case == "short-votes":
        record["votes"] = [True]
    elif case == "huge-n-learners":
        data["n_learners"] = 100000
    elif case == "counts":
        record["approvals"] = 7
    return data


@pytest.mark.parametrize("case, named", [("proposer-99", "proposer 99"), ("negative-learners", "n_learners"),
                                         ("short-votes", "votes has 1"), ("huge-n-learners", "100000"),
                                         ("counts", "approvals")])
def test_plot_refuses_an_inconsistent_results_file_quickly(tmp_path, case, named):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_results_dict()))
    ExperimentResults.load(good)  # the untouched file is valid: the corruption is what is refused
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(_corrupt(_results_dict(), case)))
    started = time.monotonic()
    line = one_line_error(colearn("plot", str(bad)))
    assert "not a colearn results file" in line and named in line, line
    assert time.monotonic() - started < 30
    assert not list(tmp_path.glob("*.png"))


# ---- secrets --------------------------------------------------------------------------------------------

API_KEY = "k3y-0f-th3-n0d3-7a1b2c"


class _FailingNode(BaseHTTPRequestHandler):
    """A JSON-RPC node that says who it is, then fails every other call as a gateway whose node went down."""

    answers = {"web3_clientVersion": "fake/1", "eth_chainId": "0x539"}

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request.get("method") not in self.answers:
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": self.answers[request["method"]]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3/{API_KEY}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.slow
def test_an_rpc_url_with_an_api_key_never_reaches_the_error_output(tmp_path, failing_node):
    pytest.importorskip("web3")
    keys = tmp_path / "keys"
    keys.write_text("\n".join(f"{i + 1:064x}" for i in range(3)))
    result = colearn("run", "--backend", "ledger", "--task", "iris", "--n-learners", "3", "--n-rounds", "1",
                     "--no-plots", "-q", "--keys-file", str(keys), "--out", str(tmp_path / "out"),
                     env={"COLEARN_LEDGER_RPC_URL": failing_node})  # the secret from the environment, not argv
    line = one_line_error(result)
    assert "502" in line and MASK in line, line  # the node's failure is reported...
    assert API_KEY not in result.stdout + result.stderr  # ...without its key
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(errors="replace"), path


def test_redaction_covers_the_url_its_path_and_log_records(caplog):
    url = f"https://user:pa55word@node.invalid/v3/{API_KEY}?apikey=q"
    try:
        register_secret(url)
        assert API_KEY not in redact(f"502 for url: {url}") and API_KEY not in redact(f"url: /v3/{API_KEY}")
        assert "pa55word" not in redact("auth pa55word failed")
        import logging

        with caplog.at_level(logging.WARNING):
            logging.getLogger("colearn.test").warning("node %s is down", url)
        assert caplog.records and all(API_KEY not in r.getMessage() for r in caplog.records)
        assert "node *** is down" in caplog.text
    finally:
        forget_secrets()
    assert redact(f"/v3/{API_KEY}") == f"/v3/{API_KEY}"  # forgotten: nothing else is touched
