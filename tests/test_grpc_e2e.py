"""End to end on 127.0.0.1: learner servers in separate processes, TLS and per-learner tokens.

The results of 10 rounds equal the in-process backend's for the same seed; a server killed with
SIGKILL mid-round is an abstention, later rounds go on, and after a restart on its port it rejoins.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import List

import pytest

pytest.importorskip("grpc")

from colearn.backends.local import LocalBackend  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.grpc.backend import GrpcBackend  # noqa: E402
from colearn.grpc.security import ClientTLS, make_self_signed  # noqa: E402
from colearn.hooks import Callback  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from tests.grpc_learners import make_learner  # noqa: E402
from tests.grpc_servers import ServerProcess, entry_point_args, stop_all  # noqa: E402

N = 5
pytestmark = pytest.mark.slow


VICTIM = 2  # the server the fault test kills; it scores slowly enough to be killed mid-call


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> List[ServerProcess]:
    """Five learner servers (TLS, one token each); the fault test runs last, as it restarts one."""
    workdir = tmp_path_factory.mktemp("grpc-e2e")
    make_self_signed(workdir, ["localhost", "127.0.0.1"], name="server")
    procs = []
    for i in range(N):
        (workdir / f"token{i}").write_text(f"token-of-learner-{i}-{'x' * 20}\n")
        params = {"test_delay": 0.4} if i == VICTIM else {}
        procs.append(ServerProcess(workdir, f"learner{i}", [
            *entry_point_args(i, **params), "--cert", str(workdir / "server.crt"),
            "--key", str(workdir / "server.key"), "--token-file", str(workdir / f"token{i}")]))
    request.addfinalizer(lambda: stop_all(procs))
    threads = [threading.Thread(target=proc.start) for proc in procs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(proc.port for proc in procs), [p.name for p in procs if not p.port]
    return procs


def backend_for(servers: List[ServerProcess], timeout: float = 30.0) -> GrpcBackend:
    workdir = servers[0].workdir
    tokens = [(workdir / f"token{i}").read_text().strip() for i in range(N)]
    return GrpcBackend([s.address for s in servers], tls=ClientTLS(ca_file=str(workdir / "server.crt")),
                       token=tokens, timeout=timeout)


def normalised(results) -> dict:
    data = json.loads(results.to_json(include_timings=False))
    data["backend"], data["versions"] = "?", {}
    return data


def test_ten_rounds_over_tls_with_tokens_equal_the_in_process_results(servers: List[ServerProcess]) -> None:
    config = ProtocolConfig(vote_threshold=0.5, seed=0)
    with backend_for(servers) as backend:
        assert all(info["healthy"] for info in backend.info().values())
        remote = Experiment(backend, config).run(10)
        assert backend.events == []
    local = Experiment(LocalBackend([make_learner(i) for i in range(N)]), config).run(10)
    assert remote.backend == "grpc"
    assert len(remote.rounds) == 10 and remote.n_accepted >= 1
    assert all(error is None for r in remote.rounds for error in r.vote_errors)
    assert normalised(remote) == normalised(local)


def test_colearn_run_drives_remote_learners(servers: List[ServerProcess], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from colearn.cli import app
    from colearn.results import ExperimentResults

    workdir = servers[0].workdir
    token_file = tmp_path / "tokens"
    token_file.write_text("".join((workdir / f"token{i}").read_text() for i in range(N)))
    result = CliRunner().invoke(app, ["run", "--learners", ",".join(s.address for s in servers), "--n-rounds", "2",
                                      "--token-file", str(token_file), "--ca-cert", str(workdir / "server.crt"),
                                      "--timeout", "30", "--out", str(tmp_path / "out"), "--no-plots", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "out" / "results.json").read_text()
    results = ExperimentResults.from_json(saved)
    assert results.backend == "grpc" and results.n_learners == N and len(results.rounds) == 2
    assert all(e is None for r in results.rounds for e in r.vote_errors)
    assert "token-of-learner" not in saved  # the config records the token file's path, never a token


class KillAndRestart(Callback):
    """Kills server ``victim`` while round ``kill_round`` is under way; restarts it at ``restart_round``."""

    def __init__(self, servers: List[ServerProcess], victim: int, kill_round: int, restart_round: int):
        self.servers, self.victim = servers, victim
        self.kill_round, self.restart_round = kill_round, restart_round
        self.killer: threading.Timer | None = None

    def on_round_start(self, round_index: int, proposer: int) -> None:
        if round_index == self.kill_round:
            self.killer = threading.Timer(0.15, self.servers[self.victim].kill9)  # while it is still voting
            self.killer.start()
        if round_index == self.restart_round:
            self.servers[self.victim].restart()

    def on_round_end(self, record) -> None:
        if record.round_index == self.kill_round and self.killer is not None:
            self.killer.join()


def test_a_server_killed_mid_round_abstains_and_rejoins_after_restart(servers: List[ServerProcess]) -> None:
    victim = VICTIM
    hook = KillAndRestart(servers, victim, kill_round=3, restart_round=6)
    with backend_for(servers) as backend:
        results = Experiment(backend, ProtocolConfig(vote_threshold=0.5, seed=0), hooks=[hook]).run(10)
        events = list(backend.events)
    rounds = results.rounds
    assert len(rounds) == 10
    killed = rounds[3]
    assert killed.proposer != victim and killed.votes[victim] is None
    assert killed.abstentions >= 1 and "crashed" not in (killed.proposer_error or "")
    assert killed.vote_errors[victim] is not None and "UNAVAILABLE" in killed.vote_errors[victim]
    assert killed.approvals + killed.rejections == N - 2  # every other voter still voted
    for r in rounds[4:6]:  # still down: an abstention (or a failed proposal), never a crash of the run
        assert r.votes[victim] is None
        assert r.vote_errors[victim] is not None or r.proposer == victim
    for r in rounds[6:]:  # restarted on its port: it rejoins
        if r.proposer != victim:
            assert r.vote_errors[victim] is None and r.votes[victim] is not None
    assert rounds[7].proposer == victim and rounds[7].proposer_error is None
    assert {e.learner for e in events} == {victim} and {e.kind for e in events} <= {"crashed", "restarted"}
    assert any(e.kind == "restarted" and "re-synced" in e.error for e in events)  # it was found and re-synced
