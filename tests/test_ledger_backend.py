"""The ledger backend: same results as the local backend, agents that check hashes, failures on chain."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from colearn.backends.base import Failure  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.ledger import agent as agent_module  # noqa: E402
from colearn.ledger.backend import LedgerBackend, threshold_fraction  # noqa: E402
from colearn.ledger.blobstore import BlobIntegrityError, BlobMissingError, BlobStore, blob_hash  # noqa: E402
from colearn.ledger.chain import LedgerError, load_keys, read_events  # noqa: E402
from colearn.ml_interface import DiffPrivBudget, ErrorCodes, TrainingSummary, Weights  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.runner import RunConfig, run  # noqa: E402
from tests.learners import PlusOneLearner, RaisingLearner  # noqa: E402
from tests.test_ledger_learners import register_softmax  # noqa: E402


def comparable(results) -> dict:
    data = json.loads(results.to_json(include_timings=False))
    data["backend"], data["extra"] = "-", {}
    data["config"]["backend"], data["config"]["backend_options"] = "-", {}
    return data


def run_ledger_experiment(learners, n_rounds: int, tmp_path, threshold: float = 0.5, **kwargs):
    backend = LedgerBackend(learners, vote_threshold=threshold, blob_dir=tmp_path / "blobs", **kwargs)
    config = ProtocolConfig(vote_threshold=threshold).model_copy(update={"selector": backend.selector})
    return backend, Experiment(backend, config).run(n_rounds)


@pytest.mark.slow
def test_ledger_run_equals_local_run_for_the_same_seed(tmp_path):
    name = register_softmax()
    base = dict(learner=name, n_learners=3, n_rounds=3, seed=3, vote_threshold=0.5)
    local = run(RunConfig(**base))
    ledger = run(RunConfig(**base, backend="ledger", backend_options={"workdir": str(tmp_path)}))
    assert ledger.backend == "ledger" and ledger.config["selector"] == "round_robin"
    assert comparable(ledger) == comparable(local)
    rounds = ledger.extra["ledger"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for entry, record in zip(rounds, ledger.rounds):
        kinds = [tx["kind"] for tx in entry["txs"]]
        assert kinds == ["propose", "finalize"]  # the votes are signed off chain and go in with finalize
        assert entry["gas"] == sum(tx["gas"] for tx in entry["txs"]) > 0
        assert all(tx["tx"].startswith("0x") and len(tx["tx"]) == 66 for tx in entry["txs"])
        assert entry["accepted"] == record.accepted and entry["proposer"] == record.proposer
    assert (tmp_path / "ledger.json").is_file()
    assert "rpc_url" not in json.dumps(ledger.config)


def test_threshold_is_the_exact_fraction_of_the_protocol():
    assert threshold_fraction(0.5) == (1, 2)
    assert threshold_fraction(0.7) == (7, 10)
    assert threshold_fraction(1.0) == (1, 1)
    with pytest.raises(ValueError, match="vote_threshold"):
        threshold_fraction(1.5)


def test_blob_store_names_by_hash_and_refuses_tampered_or_missing_blobs(tmp_path):
    store = BlobStore(tmp_path)
    digest = store.put(b"weights")
    assert digest == blob_hash(b"weights") and store.get(digest) == b"weights" and store.has("0x" + digest)
    assert list(store) == [digest]
    store.path(digest).write_bytes(b"weightz")
    with pytest.raises(BlobIntegrityError, match="tampered"):
        store.get(digest)
    with pytest.raises(BlobMissingError):
        store.get("ab" * 32)
    with pytest.raises(ValueError, match="64 hex digits"):
        store.get("../../etc/passwd")


def test_voters_check_the_hash_before_decoding_and_reject_a_tampered_blob(tmp_path, monkeypatch):
    learners = [PlusOneLearner() for _ in range(3)]
    backend = LedgerBackend(learners, blob_dir=tmp_path / "blobs")
    proposal = backend.propose(0)
    digest = backend.rounds[0]["model_hash"][2:]
    backend.store.path(digest).write_bytes(b"CLW1 not the proposed weights")
    decoded = []
    monkeypatch.setattr(agent_module, "decode_weights", lambda blob: decoded.append(blob))
    responses = backend.test(proposal, [1, 2])
    assert decoded == []  # the tampered bytes never reached the decoder
    assert all(isinstance(r, Failure) and r.kind == "refused" and "tampered" in r.error for r in responses.values())
    votes = [e["args"]["vote"] for e in read_events(backend.contract) if e["name"] == "Voted"]
    assert votes == [2, 2]  # both rejected on chain: a voter that cannot score a proposal cannot vouch for it
    assert backend.rounds[0]["accepted"] is False
    assert all(learner.value == 0 for learner in learners)  # nobody adopted anything


def test_failing_and_silent_voters_follow_the_contract(tmp_path, monkeypatch):
    learners = [PlusOneLearner(), RaisingLearner(("test",)), PlusOneLearner(limit=0), PlusOneLearner(),
                PlusOneLearner()]
    backend = LedgerBackend(learners, blob_dir=tmp_path / "blobs", vote_period=12)
    silent = backend.agents[3]
    monkeypatch.setattr(silent, "vote", lambda r: Failure(3, "crashed before voting", "crashed"))
    config = ProtocolConfig(vote_threshold=0.5).model_copy(update={"selector": backend.selector})
    record = Experiment(backend, config).run_round()
    # learner 1 raised (its own failure: it abstains, in the record and on chain), 2 rejects, 3 never answered,
    # 4 approves: 1 for, 1 against of 4 possible voters -> quorum 2 of 4 met, 1/2 approve -> accepted
    assert record.votes == [None, None, False, None, True] and "voter exploded" in record.vote_errors[1]
    on_chain = {e["args"]["voter"]: e["args"]["vote"] for e in read_events(backend.contract) if e["name"] == "Voted"}
    assert on_chain == {2: 2, 4: 1}  # learner 1 signed nothing: the chain counts it as the record does
    assert (backend.rounds[0]["approvals"], backend.rounds[0]["rejections"], backend.rounds[0]["abstentions"]) == \
        (record.approvals, record.rejections, record.abstentions) == (1, 1, 2)
    assert backend.rounds[0]["accepted"] is record.accepted is True
    finalize = backend.rounds[0]["txs"][-1]
    proposed = next(e for e in read_events(backend.contract) if e["name"] == "Proposed")
    assert finalize["kind"] == "finalize" and finalize["block"] > proposed["args"]["deadline"]  # votes missing
    assert [learner.value for learner in learners] == [1, 1, 1, 1, 1]


def test_the_driver_record_and_the_chain_agree_on_every_kind_of_voter_answer(tmp_path):
    """Approve, reject, a refusal (ProposalRefused: reject), garbage and a raise (the voter's own failure:
    abstain): each voter's vote in the record is the one it signed on chain, or absent on both."""
    from colearn.ml_interface import ProposalRefused
    from tests.learners import GarbageVoter

    class Refuser(PlusOneLearner):
        def mli_test_weights(self, weights):
            raise ProposalRefused("does not fit my model")

    learners = [PlusOneLearner(), PlusOneLearner(), PlusOneLearner(limit=0), Refuser(), GarbageVoter(),
                RaisingLearner(("test",))]
    backend = LedgerBackend(learners, blob_dir=tmp_path / "blobs", vote_period=12)
    config = ProtocolConfig(vote_threshold=0.5).model_copy(update={"selector": backend.selector})
    record = Experiment(backend, config).run_round()
    assert record.votes == [None, True, False, False, None, None]
    on_chain = {e["args"]["voter"]: e["args"]["vote"] for e in read_events(backend.contract) if e["name"] == "Voted"}
    assert {i: {1: True, 2: False}[v] for i, v in on_chain.items()} == \
        {i: v for i, v in enumerate(record.votes) if v is not None}
    fin = next(e["args"] for e in read_events(backend.contract) if e["name"] == "Finalized")
    assert (fin["approvals"], fin["rejections"], fin["abstentions"], fin["accepted"]) == \
        (record.approvals, record.rejections, record.abstentions, record.accepted)


@pytest.mark.slow
def test_proposer_failures_pass_the_turn_and_a_spent_budget_retires(tmp_path):
    class Exhausted(PlusOneLearner):
        def mli_propose_weights(self) -> Weights:
            budget = DiffPrivBudget(target_epsilon=1, target_delta=1e-5, consumed_epsilon=1, consumed_delta=0)
            return Weights(weights=self.value, training_summary=TrainingSummary(
                dp_budget=budget, error_code=ErrorCodes.DP_BUDGET_EXCEEDED))

    learners = [Exhausted(), RaisingLearner(("propose",)), PlusOneLearner()]
    backend, results = run_ledger_experiment(learners, 4, tmp_path)
    proposers = [r.proposer for r in results.rounds]
    assert proposers == [0, 1, 2, 1]  # learner 0 retired in round 0: round 3 goes to learner 1
    assert results.rounds[0].proposer_error == "DP_BUDGET_EXCEEDED" and "exploded" in results.rounds[1].proposer_error
    assert results.rounds[2].accepted is True
    skipped = [e["args"] for e in read_events(backend.contract) if e["name"] == "Skipped"]
    assert [(s["round_index"], s["retired"]) for s in skipped] == [(0, True), (1, False), (3, False)]
    assert [learner.value for learner in learners] == [1, 1, 1]


@pytest.mark.slow
def test_random_selector_is_the_contracts_and_reproducible(tmp_path):
    picks = []
    for attempt in range(2):
        learners = [PlusOneLearner() for _ in range(4)]
        backend, results = run_ledger_experiment(learners, 3, tmp_path / str(attempt), selector="random", seed=11)
        picks.append([r.proposer for r in results.rounds])
        opened = [e["args"]["proposer"] for e in read_events(backend.contract) if e["name"] == "RoundOpened"]
        assert picks[-1] == opened[:3]
    assert picks[0] == picks[1]


def test_keys_come_from_a_file_or_the_environment_and_are_never_quoted(tmp_path, monkeypatch):
    secret = "0x" + "4c" * 32
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# learners\n{secret}\n0x{'5d' * 32}  # second\n")
    accounts = load_keys(2, str(keys))
    assert accounts[0].key.hex().removeprefix("0x") == secret[2:]
    with pytest.raises(LedgerError, match="holds 2 private keys, 3 learners need 3") as info:
        load_keys(3, str(keys))
    keys.write_text(f"{secret[:-2]}zz\n")
    with pytest.raises(LedgerError, match="entry 1 is not a valid private key") as info:
        load_keys(1, str(keys))
    assert secret[2:20] not in str(info.value)
    monkeypatch.setenv("COLEARN_TEST_KEYS", f"{secret},0x{'5d' * 32}")
    assert len(load_keys(2, env_var="COLEARN_TEST_KEYS")) == 2
    monkeypatch.delenv("COLEARN_LEDGER_KEYS", raising=False)
    with pytest.raises(LedgerError, match="COLEARN_LEDGER_KEYS"):
        load_keys(2)


def test_unknown_backend_options_are_refused_by_name(tmp_path):
    name = register_softmax()
    config = RunConfig(learner=name, n_learners=2, n_rounds=1, backend="ledger",
                       backend_options={"rpc_ur": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="rpc_ur"):
        run(config)
