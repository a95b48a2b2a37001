"""Late joiners on a local node (ganache on 127.0.0.1, mining a block every 0.5 s): `colearn deploy --max-learners`,
`colearn admit`, `colearn agent --join`, then `colearn watch` and `colearn audit` over a learner count that grows.

A fourth agent waits for admission, is admitted after round k, holds exactly the latest accepted model (fetched by
hash from its peers) before its first vote, then votes and proposes; joins the experiment does not allow, beyond
its cap or without admission are refused with one line naming the option. Every wait is bounded; every process is
stopped by the test.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

pytest.importorskip("web3")
pytest.importorskip("grpc")

from typer.testing import CliRunner  # noqa: E402

from colearn.cli import app  # noqa: E402
from colearn.results import ExperimentResults  # noqa: E402
from tests.agent_helpers import (BLOCK_TIME, ChainView, address_of, agents, cli, deploy, ganache_or_skip,  # noqa: E402
                                 split_keys, wait_for)

pytestmark = pytest.mark.slow
N_KEYS = 5
ZERO = "00" * 32


@pytest.fixture(scope="module")
def node():
    """(url, keys file) of a ganache node on 127.0.0.1 (stopped afterwards); skipped without ganache."""
    yield from ganache_or_skip(N_KEYS, "colearn-join-test", BLOCK_TIME)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLEARN_AGENT_KEY"}
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env={**env, "COLUMNS": "200"})


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The error a refused command printed: exit code 2 and exactly one line on stderr."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stdout + done.stderr
    return lines[0]


def accepted_before(view: ChainView, round_index: int) -> str:
    """The model the contract held when ``round_index`` opened: the last one accepted in an earlier round."""
    accepted = [e["args"] for e in view.events("Finalized") if e["args"]["accepted"]
                and e["args"]["round_index"] < round_index]
    return bytes(accepted[-1]["model_hash"]).hex() if accepted else ZERO


def test_a_late_joiner_waits_for_admission_joins_holding_the_latest_model_votes_proposes_and_audits(node, tmp_path):
    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 5)
    experiment = tmp_path / "experiment.json"
    loaded = deploy(url, keys[:3], experiment, "--propose-period", "40", "--vote-period", "16", "--max-learners", "4")
    assert loaded.max_learners == 4 and loaded.admitter == address_of(keys[0]) and len(loaded.learners) == 3
    view = ChainView(url, experiment)
    joiner = address_of(keys[3])
    # every agent stops acting then (and keeps serving), so that watch and audit see a settled chain; 16 leaves the
    # joiner a full rotation of slack on a loaded machine (admitted at round 2 or later, proposing within 4 rounds)
    rounds = 16
    with agents(url, experiment, keys, tmp_path, "--timeout", "240", "--fetch-patience", "3", "--rounds", str(rounds),
                "--linger", "200") as group:
        for i in range(3):
            group.start(i)
        group.start(3, None, "--join", "--join-timeout", "200")  # not a learner yet: it waits for admission
        wait_for(lambda: "waiting up to" in group.log(3), 60, "the joiner to wait for its admission")
        wait_for(lambda: view.current_round() >= 2 and view.current_model() != ZERO, 90,
                 "two rounds and an accepted model among the first three agents")
        assert view.contract.functions.n_learners().call() == 3 and group.processes[3].poll() is None
        admitted = run_cli("admit", str(experiment), "--learner", joiner, "--rpc-url", url, "--key-file", str(keys[0]))
        assert admitted.returncode == 0, admitted.stdout + admitted.stderr
        (joined,) = [e["args"] for e in view.events("LearnerJoined")]
        first = joined["first_round"]
        assert (joined["index"], joined["learner"]) == (3, joiner)
        assert f"as learner 3: it votes and proposes from round {first}" in admitted.stdout
        # the joiner votes in its first round at the earliest, and proposes in a round of its own
        wait_for(lambda: any(e["args"]["voter"] == 3 for e in view.events("Voted")) and
                 any(e["args"]["proposer"] == 3 for e in view.events("Proposed")), 120,
                 "the joiner to vote and to propose")
        # beyond the cap: the admitter cannot admit a fifth learner, a fifth agent cannot wait for it
        full = one_line_error(run_cli("admit", str(experiment), "--learner", address_of(keys[4]), "--rpc-url", url,
                                      "--key-file", str(keys[0])))
        assert "full" in full and "--max-learners is 4" in full
        late = one_line_error(run_cli("agent", str(experiment), "--rpc-url", url, "--key-file", str(keys[4]),
                                      "--join", "--join-timeout", "5", "--timeout", "20"))
        assert "--join" in late and "full" in late and "--max-learners" in late
        wait_for(lambda: any(e["args"]["accepted"] and e["args"]["round_index"] > first
                             for e in view.events("Finalized")), 60, "a round after the joiner's first to accept")
        out = tmp_path / "watch"
        watched = run_cli("watch", str(experiment), "--rpc-url", url, "--out", str(out), "--rounds", str(rounds),
                          "--timeout", "120", "--no-plots", timeout=150)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        audited = CliRunner().invoke(app, ["audit", str(out), "--rpc-url", url])
        group.stop_all()
    log = group.log(3)
    taking_part = re.search(r"round (\d+): taking part as learner 3 of 4, holding model ([0-9a-f]{64})", log)
    assert taking_part is not None, log[-3000:]
    started, held = int(taking_part.group(1)), taking_part.group(2)
    assert started >= first and held == accepted_before(view, started) != ZERO  # exactly the latest accepted model
    first_vote = re.search(r"round (\d+): voted", log)
    assert first_vote is not None and log.index(taking_part.group(0)) < first_vote.start()
    assert int(first_vote.group(1)) >= started
    votes = [e["args"] for e in view.events("Voted") if e["args"]["voter"] == 3]
    assert min(v["round_index"] for v in votes) >= first  # never in a round that opened before it was admitted
    summary = log.rsplit("agent 3 stopped", 1)[-1]
    assert " 0 fetched" not in summary and "fetched" in summary  # the models came from its peers, by hash
    assert audited.exit_code == 0 and "audit passed" in audited.output, audited.output
    assert f"learner 3 ({joiner}) joined, a learner from round {first}" in " ".join(audited.output.split())
    results = ExperimentResults.load(out / "results.json")
    assert results.n_learners == 4 and len(results.rounds) == rounds
    assert all(r.votes[3] is None for r in results.rounds if r.round_index < first)
    assert any(r.votes[3] is not None for r in results.rounds if r.round_index >= first)
    assert results.extra["ledger"]["joined"][0]["first_round"] == first


def test_joining_is_refused_when_not_allowed_without_admission_or_by_anyone_but_the_admitter(node, tmp_path):
    from colearn.ledger.experiment_file import experiment_at

    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 4)
    closed = deploy(url, keys[:2], tmp_path / "closed.json")
    assert closed.max_learners == 0 and closed.admitter is None
    outsider = address_of(keys[3])
    refused = one_line_error(run_cli("agent", str(tmp_path / "closed.json"), "--rpc-url", url, "--key-file",
                                     str(keys[3]), "--join", "--join-timeout", "5", "--timeout", "20"))
    assert "does not allow late joining" in refused and "--max-learners" in refused
    refused = one_line_error(run_cli("admit", str(tmp_path / "closed.json"), "--learner", outsider, "--rpc-url", url,
                                     "--key-file", str(keys[0])))
    assert "does not allow late joining" in refused and "--max-learners" in refused
    open_ = deploy(url, keys[:2], tmp_path / "open.json", "--max-learners", "3")
    waited = one_line_error(run_cli("agent", str(tmp_path / "open.json"), "--rpc-url", url, "--key-file",
                                    str(keys[3]), "--join", "--join-timeout", "2", "--timeout", "30"))
    assert "not admitted within 2 s (--join-timeout)" in waited and open_.admitter in waited
    hint = one_line_error(run_cli("agent", str(tmp_path / "open.json"), "--rpc-url", url, "--key-file",
                                  str(keys[3]), "--timeout", "20"))
    assert "not one of the experiment's learners" in hint and "--join" in hint
    stranger = one_line_error(run_cli("admit", str(tmp_path / "open.json"), "--learner", outsider, "--rpc-url", url,
                                      "--key-file", str(keys[1])))
    assert "is not the experiment's admitter" in stranger
    view = ChainView(url, tmp_path / "open.json")
    assert experiment_at(view.chain, open_.contract) == open_  # the contract records the joining settings too
    assert view.events("LearnerJoined") == [] and view.contract.functions.n_learners().call() == 2
    bad = one_line_error(run_cli("deploy", "--learners", ",".join(address_of(k) for k in keys[:2]), "--rpc-url", url,
                                 "--key-file", str(keys[0]), "--out", str(tmp_path / "bad.json"),
                                 "--max-learners", "2"))
    assert bad.startswith("error: --max-learners must exceed the 2 learners")
    bad = one_line_error(run_cli("deploy", "--learners", ",".join(address_of(k) for k in keys[:2]), "--rpc-url", url,
                                 "--key-file", str(keys[0]), "--out", str(tmp_path / "bad.json"),
                                 "--admitter", address_of(keys[1])))
    assert bad.startswith("error: --admitter") and "--max-learners" in bad
