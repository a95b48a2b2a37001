"""The Colearn contract on the embedded chain: rules, reverts with reasons, events, tie rule, selectors."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from colearn.ledger.audit import _selected  # noqa: E402
from colearn.ledger.chain import LedgerRevert, embedded_chain, read_events, throwaway_keys  # noqa: E402
from colearn.ledger.compile import ARTIFACT, EVM_VERSION, VYPER_VERSION, load_artifact  # noqa: E402
from colearn.protocol import TallyRule, tally  # noqa: E402

HASH = bytes.fromhex("11" * 32)


class Deployment:
    def __init__(self, n: int = 4, num: int = 1, den: int = 2, vote_period: int = 10, propose_period: int = 5,
                 selector: int = 0, seed: int = 0):
        self.keys = throwaway_keys(n + 1)  # the last one is not a learner
        self.chain = embedded_chain([k.address for k in self.keys])
        self.contract, _ = self.chain.deploy(self.keys[0], [[k.address for k in self.keys[:n]], num, den,
                                                            vote_period, propose_period, selector, seed])
        self.f = self.contract.functions

    def send(self, who: int, call):
        return self.chain.send(self.keys[who], call)

    def reverts(self, who: int, call) -> str:
        with pytest.raises(LedgerRevert) as info:
            self.send(who, call)
        return info.value.reason

    def events(self, name: str):
        return [e["args"] for e in read_events(self.contract) if e["name"] == name]


def test_a_round_and_every_refusal_with_its_reason():
    d = Deployment(n=4)
    assert d.f.current_proposer().call() == 0
    assert d.reverts(4, d.f.propose(0, HASH)) == "not a learner"
    assert d.reverts(1, d.f.propose(0, HASH)) == "not the proposer of this round"
    assert d.reverts(1, d.f.vote(0, True)) == "no proposal to vote on"
    assert d.reverts(1, d.f.finalize(0)) == "no proposal to finalize"
    assert d.reverts(0, d.f.propose(1, HASH)) == "round not open yet"
    assert d.reverts(0, d.f.propose(0, b"\x00" * 32)) == "empty model hash"
    d.send(0, d.f.propose(0, HASH))
    assert d.reverts(0, d.f.propose(0, HASH)) == "already proposed"
    assert d.reverts(0, d.f.vote(0, True)) == "the proposer does not vote"
    assert d.reverts(4, d.f.vote(0, True)) == "not a learner"
    d.send(1, d.f.vote(0, True))
    assert d.reverts(1, d.f.vote(0, False)) == "already voted"
    assert d.reverts(1, d.f.abstain(0)) == "already voted"
    d.send(2, d.f.vote(0, False))
    assert d.reverts(1, d.f.finalize(0)) == "voting still open"  # learner 3 has not answered, deadline ahead
    deadline = d.events("Proposed")[0]["deadline"]
    d.chain.advance_to(deadline + 1)
    assert d.reverts(3, d.f.vote(0, True)) == "voting closed"
    d.send(3, d.f.finalize(0))  # 1 for, 1 against, 1 silent: 1/2 >= 1/2 -> accepted (the tie rule)
    assert d.reverts(3, d.f.finalize(0)) == "round already closed"
    assert d.reverts(1, d.f.vote(0, True)) == "round already closed"
    (fin,) = d.events("Finalized")
    assert (fin["accepted"], fin["approvals"], fin["rejections"], fin["abstentions"]) == (True, 1, 1, 1)
    assert fin["model_hash"] == HASH
    assert d.f.current_model().call() == HASH and d.f.n_accepted().call() == 1
    assert d.f.current_round().call() == 1 and d.f.current_proposer().call() == 1
    names = [e["name"] for e in read_events(d.contract)]
    assert names == ["LearnerAdded"] * 4 + ["Configured", "RoundOpened", "Proposed", "Voted", "Voted",
                                            "Finalized", "RoundOpened"]


def test_early_finalize_once_everyone_answered_and_abstainers_are_not_voters():
    d = Deployment(n=3)
    d.send(0, d.f.propose(0, HASH))
    d.send(1, d.f.abstain(0))
    d.send(2, d.f.abstain(0))
    d.send(1, d.f.finalize(0))  # everyone answered: no need to wait for the deadline
    (fin,) = d.events("Finalized")
    assert fin["accepted"] is False and fin["abstentions"] == 2  # nobody vouched: rejected whatever the threshold
    assert d.f.current_model().call() == b"\x00" * 32
    assert [e["vote"] for e in d.events("Voted")] == [3, 3]


@pytest.mark.parametrize("threshold, votes", [
    ((1, 2), [True, False, None]),
    ((2, 3), [True, True, False]),
    ((7, 10), [True, True, False, None]),
    ((1, 1), [True, True, False]),
    ((0, 1), [False, None, None]),
    ((0, 1), [None, None, None]),
])
def test_the_contract_tally_is_colearn_protocol_tally(threshold, votes):
    num, den = threshold
    d = Deployment(n=len(votes) + 1, num=num, den=den)
    d.send(0, d.f.propose(0, HASH))
    for i, vote in enumerate(votes, start=1):
        d.send(i, d.f.abstain(0) if vote is None else d.f.vote(0, vote))
    d.send(0, d.f.finalize(0))
    (fin,) = d.events("Finalized")
    expected = tally(votes, num / den, TallyRule.FRACTION_OF_VOTERS)  # the contract has no quorum yet
    assert fin["accepted"] == expected.accepted
    assert (fin["approvals"], fin["rejections"]) == (expected.approvals, expected.rejections)


def test_skip_retire_and_the_round_robin_that_skips_retired_learners():
    d = Deployment(n=3, propose_period=4)
    assert d.reverts(1, d.f.skip(0, False)) == "proposer still has time"
    assert d.reverts(1, d.f.skip(0, True)) == "only the proposer can retire itself"
    d.send(0, d.f.skip(0, True))  # learner 0's budget is spent
    assert d.f.retired(0).call() is True
    assert d.f.current_proposer().call() == 1
    d.send(1, d.f.propose(1, HASH))
    assert d.reverts(1, d.f.skip(1, False)) == "already proposed"
    d.send(2, d.f.vote(1, True))
    d.send(0, d.f.vote(1, True))  # a retired learner still votes
    d.send(0, d.f.finalize(1))
    assert d.f.current_proposer().call() == 2
    d.chain.advance_to(d.chain.block_number + 6)  # learner 2 stays silent past the propose period
    d.send(1, d.f.skip(2, False))
    assert d.f.current_round().call() == 3
    assert d.f.current_proposer().call() == 1  # round 3 % 3 = learner 0 is retired: the next one
    skipped = d.events("Skipped")
    assert [(s["proposer"], s["retired"], s["caller"]) for s in skipped] == [(0, True, 0), (2, False, 1)]


def test_every_learner_retired_halts_the_contract():
    d = Deployment(n=2)
    d.send(0, d.f.skip(0, True))
    d.send(1, d.f.skip(1, True))
    assert d.f.halted().call() is True
    assert d.reverts(0, d.f.propose(2, HASH)) == "every learner retired"


def test_keccak_selector_is_reproducible_and_follows_the_rule_audit_checks():
    d = Deployment(n=5, selector=1, seed=7)
    config = {"n_learners": 5, "selector": 1, "seed": 7}
    picks = []
    for r in range(4):
        proposer = d.f.current_proposer().call()
        assert proposer == _selected(config, set(), r)
        picks.append(proposer)
        d.send(proposer, d.f.skip(r, False))
    assert len(set(picks)) > 1  # not stuck on one learner


@pytest.mark.parametrize("args, reason", [
    ("dup", "duplicate learner"),
    ("one", "need at least two learners"),
    ("num", "threshold must be at most 1"),
    ("den", "threshold denominator must be positive"),
])
def test_constructor_refuses_bad_settings(args, reason):
    keys = throwaway_keys(2)
    chain = embedded_chain([k.address for k in keys])
    learners = [k.address for k in keys]
    settings = {"dup": [[learners[0], learners[0]], 1, 2], "one": [learners[:1], 1, 2],
                "num": [learners, 3, 2], "den": [learners, 0, 0]}[args]
    with pytest.raises(LedgerRevert, match=reason):
        chain.deploy(keys[0], [*settings, 10, 10, 0, 0])


@pytest.mark.slow
def test_committed_artifact_matches_the_source_and_the_pinned_compiler():
    artifact = load_artifact()
    assert artifact["compiler"] == f"vyper-{VYPER_VERSION}" and artifact["evm_version"] == EVM_VERSION
    vyper = pytest.importorskip("vyper")
    if vyper.__version__.split("+")[0] != VYPER_VERSION:
        pytest.skip(f"vyper {VYPER_VERSION} is not installed")
    from colearn.ledger.compile import compile_contract

    fresh = compile_contract()
    committed = json.loads(ARTIFACT.read_text())
    assert fresh["bytecode"] == committed["bytecode"] and fresh["abi"] == committed["abi"]
