"""Independent agents on a local node (ganache on 127.0.0.1, mining a block every 0.5 s), no driver.

`colearn deploy`, then one `colearn agent` process per learner, each with its own key file, and `colearn watch`
as an observer: the rounds equal the local backend's for the same seed and watch's results pass `colearn audit`.
Faults: kill -9 of a proposer mid-round and of a voter mid-vote, restarts that rejoin holding the accepted model
fetched from peers, and a peer that serves bytes that do not match the hash. Every wait is bounded; every process
is stopped by the test.
"""
from __future__ import annotations

import subprocess
import threading

import pytest

pytest.importorskip("web3")
pytest.importorskip("grpc")

from typer.testing import CliRunner  # noqa: E402

from colearn.cli import app  # noqa: E402
from colearn.encoding import encode_weights  # noqa: E402
from colearn.hooks import Callback  # noqa: E402
from colearn.journal import read_journal  # noqa: E402
from colearn.ledger.blobstore import BlobStore, blob_hash  # noqa: E402
from colearn.results import ExperimentResults  # noqa: E402
from colearn.runner import RunConfig, run  # noqa: E402
from tests.agent_helpers import (BLOCK_TIME, ChainView, agents, cli, deploy, ganache_or_skip, split_keys,  # noqa: E402
                                 wait_for)

pytestmark = pytest.mark.slow
N_KEYS = 5


@pytest.fixture(scope="module")
def node():
    """(url, keys file) of a ganache node on 127.0.0.1 (stopped afterwards); skipped without ganache."""
    yield from ganache_or_skip(N_KEYS, "colearn-agents-test", BLOCK_TIME)


class AcceptedHashes(Callback):
    def __init__(self):
        self.hashes = {}

    def on_weights_accepted(self, round_index, weights):
        self.hashes[round_index] = blob_hash(encode_weights(weights.weights))


def test_five_agents_and_no_driver_equal_the_local_run_and_watch_passes_the_audit(node, tmp_path):
    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 5)
    experiment = tmp_path / "experiment.json"
    deploy(url, keys, experiment, "--propose-period", "60", "--vote-period", "20", "--seed", "0")
    out = tmp_path / "watch"
    with agents(url, experiment, keys, tmp_path, "--timeout", "170", "--rounds", "10", "--linger", "120") as group:
        for i in range(5):
            group.start(i)
        watcher = subprocess.Popen(cli("watch", str(experiment), "--rpc-url", url, "--out", str(out), "--rounds",
                                       "10", "--timeout", "170"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, env={"MPLBACKEND": "Agg", **__import__("os").environ})
        try:
            wait_for(lambda: (out / "rounds.jsonl").is_file() and len(read_journal(out).rounds) >= 3, 150,
                     "watch to journal three rounds")
            assert watcher.poll() is None  # still following: the files grow as rounds finalize
            watcher.wait(timeout=170)
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait(timeout=10)
        output = watcher.stdout.read()
        assert watcher.returncode == 0, output
        view = ChainView(url, experiment)
        audited = CliRunner().invoke(app, ["audit", str(out), "--rpc-url", url])
        group.stop_all()
    for i in range(5):
        assert f"holding model {view.current_model()}" in group.log(i)  # every agent adopted the last model
    assert audited.exit_code == 0 and "audit passed" in audited.output, audited.output
    watched = ExperimentResults.load(out / "results.json")
    assert len(watched.rounds) == 10 and read_journal(out).rounds == watched.rounds
    assert (out / "results.csv").is_file() and (out / "scores.png").is_file()
    hook = AcceptedHashes()
    local = run(RunConfig(learner="sgd", n_learners=5, n_rounds=10, seed=0), hooks=[hook])
    assert [r.proposer for r in watched.rounds] == [r.proposer for r in local.rounds]
    assert [r.votes for r in watched.rounds] == [r.votes for r in local.rounds]
    assert [r.accepted for r in watched.rounds] == [r.accepted for r in local.rounds]
    finalized = {e["args"]["round_index"]: e["args"] for e in view.events("Finalized")}
    chain_hashes = {r: bytes(f["model_hash"]).hex() for r, f in finalized.items() if f["accepted"] and r < 10}
    assert chain_hashes == hook.hashes and len(chain_hashes) == local.n_accepted
    assert watched.initial_test_scores == local.initial_test_scores  # the agents published their scores
    secrets = [k.read_text().strip().removeprefix("0x") for k in keys]
    for path in out.rglob("*.json*"):
        text = path.read_text()
        assert url not in text and not any(secret in text for secret in secrets)


def test_killed_proposer_and_voter_rounds_close_by_deadline_and_restarted_agents_rejoin(node, tmp_path):
    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 4)
    experiment = tmp_path / "experiment.json"
    deploy(url, keys, experiment, "--propose-period", "12", "--vote-period", "8")
    view = ChainView(url, experiment)
    with agents(url, experiment, keys, tmp_path, "--timeout", "170", "--fetch-patience", "2") as group:
        for i in range(4):
            group.start(i)
        wait_for(lambda: view.current_round() >= 2, 90, "two rounds with every agent up")
        # kill -9 the proposer right after it proposed: nobody can finalize before the deadline
        wait_for(lambda: view.state()[2] == 2, 30, "a proposal", step=0.05)
        killed_round, proposer = view.state()[0], view.state()[1]
        group.kill(proposer)
        wait_for(lambda: view.current_round() > killed_round, 60, "the round of the dead proposer to close")
        proposed = next(e for e in view.events("Proposed") if e["args"]["round_index"] == killed_round)
        closed = next(e for e in view.events("Finalized") if e["args"]["round_index"] == killed_round)
        assert closed["block"] > proposed["args"]["deadline"]  # closed by its deadline
        group.start(proposer, tmp_path / "fresh-proposer")  # nothing on disk: it must fetch from its peers
        wait_for(lambda: view.current_model() != "00" * 32 and
                 f"adopted model {view.current_model()[:12]}" in group.log(proposer), 60,
                 "the restarted proposer to hold the accepted model")
        # kill -9 a voter while a live proposer's round is open, before it can vote (killing it after the proposal
        # would race with the proposer collecting its vote): its vote never comes, the deadline closes the round
        wait_for(lambda: view.state()[2] == 1 and view.state()[1] != proposer, 60, "a round to open", step=0.05)
        voting_round, live_proposer = view.state()[0], view.state()[1]
        voter = next(i for i in range(4) if i not in (live_proposer, proposer))
        group.kill(voter)
        wait_for(lambda: view.current_round() > voting_round, 60, "the round missing a vote to close")
        closed = next(e for e in view.events("Finalized") if e["args"]["round_index"] == voting_round)
        proposed = next(e for e in view.events("Proposed") if e["args"]["round_index"] == voting_round)
        voted = {e["args"]["voter"] for e in view.events("Voted") if e["args"]["round_index"] == voting_round}
        assert voter not in voted and closed["args"]["abstentions"] >= 1
        assert closed["block"] > proposed["args"]["deadline"]
        group.start(voter, tmp_path / "fresh-voter")
        wait_for(lambda: f"adopted model {view.current_model()[:12]}" in group.log(voter), 60,
                 "the restarted voter to hold the accepted model")
        later = view.current_round()
        wait_for(lambda: any(e["args"]["round_index"] > later and e["args"]["accepted"]
                             for e in view.events("Finalized")), 60, "a later round to be accepted")
        back = {e["args"]["voter"] for e in view.events("Voted") if e["args"]["round_index"] > later}
        assert {proposer, voter} & back  # the restarted agents vote again
        group.stop_all()
    for i in (proposer, voter):
        last = group.log(i).rsplit("agent", 1)[-1]
        assert "fetched" in last and " 0 fetched" not in last  # the models came from peers, by hash


def test_a_peer_serving_bytes_that_do_not_match_the_hash_is_refused_and_the_experiment_goes_on(node, tmp_path):
    from colearn.ledger.agent_node import ChainAgent
    from colearn.ledger.chain import load_keys
    from colearn.grpc.factory import LearnerSpec

    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 3)
    experiment = tmp_path / "experiment.json"
    deploy(url, keys, experiment, "--propose-period", "40", "--vote-period", "12")
    view = ChainView(url, experiment)

    class LyingStore(BlobStore):
        def get(self, digest):
            data = bytearray(super().get(digest))
            data[-1] ^= 0xFF  # any other bytes: the hash will not match
            return bytes(data)

    account = load_keys(1, str(keys[0]))[0]
    mli = LearnerSpec(run_config=RunConfig(learner="sgd", n_learners=3, seed=0), index=0).build()
    liar = ChainAgent(mli, account, view.chain, view.contract, tmp_path / "liar",
                      deploy_block=view.experiment.deploy_block)
    liar.server.servicer.store = LyingStore(liar.store.root)
    stop = threading.Event()
    thread = threading.Thread(target=liar.run, args=(stop.is_set,), daemon=True)
    with agents(url, experiment, keys, tmp_path, "--timeout", "120", "--fetch-patience", "2") as group:
        group.start(1)
        group.start(2)
        wait_for(lambda: len(view.events("Endpoint")) >= 2, 60, "the honest agents to announce their endpoints")
        thread.start()
        try:
            wait_for(lambda: liar_round(view) is not None, 60, "the liar to propose")
            wait_for(lambda: view.current_round() > liar_round(view) + 1, 60, "a round after the liar's")
        finally:
            stop.set()
            thread.join(timeout=30)
            liar.close()
    finalized = {e["args"]["round_index"]: e["args"] for e in view.events("Finalized")}
    lied = liar_round(view)
    assert finalized[lied]["accepted"] is False and finalized[lied]["rejections"] == 2  # refused, so rejected
    assert finalized[lied + 1]["accepted"]  # the experiment went on
    for i in (1, 2):
        assert "refused a blob from learner 0" in group.log(i)
    assert not thread.is_alive() and liar.stats.proposed >= 1


def liar_round(view: ChainView):
    """The first round learner 0 proposed in."""
    return next((e["args"]["round_index"] for e in view.events("Proposed") if e["args"]["proposer"] == 0), None)


def test_agents_take_their_key_from_a_file_or_the_environment_and_refuse_outsiders(node, tmp_path):
    from colearn.ledger.experiment_file import experiment_at

    url, keys_file = node
    keys = split_keys(keys_file, tmp_path / "keys", 3)
    experiment = tmp_path / "experiment.json"
    loaded = deploy(url, keys[:2], experiment)
    view = ChainView(url, experiment)
    assert experiment_at(view.chain, loaded.contract) == loaded  # a contract address is as good as the file
    env = {k: v for k, v in __import__("os").environ.items() if k != "COLEARN_AGENT_KEY"}
    outsider = subprocess.run(cli("agent", loaded.contract, "--rpc-url", url, "--key-file", str(keys[2]),
                                  "--timeout", "5"), capture_output=True, text=True, timeout=120, env=env)
    assert outsider.returncode == 2 and "not one of the experiment's learners" in outsider.stdout + outsider.stderr
    assert keys[2].read_text().strip()[2:] not in outsider.stdout + outsider.stderr
    keyless = subprocess.run(cli("agent", str(experiment), "--rpc-url", url, "--timeout", "5"), capture_output=True,
                             text=True, timeout=120, env=env)
    assert keyless.returncode == 2 and "COLEARN_AGENT_KEY" in keyless.stdout + keyless.stderr
