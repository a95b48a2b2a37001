"""The Colearn contract on the embedded chain: rules, reverts with reasons, signed votes, events, the tally, selectors."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

pytest.importorskip("web3")
pytest.importorskip("eth_tester")

from web3.logs import DISCARD  # noqa: E402

from colearn.ledger.audit import _selected  # noqa: E402
from colearn.ledger.chain import LedgerRevert, embedded_chain, read_events, throwaway_keys  # noqa: E402
from colearn.ledger.compile import ARTIFACT, EVM_VERSION, VYPER_VERSION, load_artifact  # noqa: E402
from colearn.ledger.votes import SignedVote, sign_vote, signer_of  # noqa: E402
from colearn.protocol import tally  # noqa: E402

HASH = bytes.fromhex("11" * 32)


NO_ADMITTER = "0x" + "00" * 20


class Deployment:
    """``n`` learners (keys 0..n-1) and ``outsiders`` more funded keys; ``max_learners`` > 0 allows late joining,
    admitted by key 0 (the deployer)."""

    def __init__(self, n: int = 4, num: int = 1, den: int = 2, vote_period: int = 10, propose_period: int = 5,
                 selector: int = 0, seed: int = 0, quorum: tuple = (1, 2), max_learners: int = 0,
                 outsiders: int = 1):
        self.keys = throwaway_keys(n + outsiders)  # the last ones are not learners
        self.chain = embedded_chain([k.address for k in self.keys])
        admitter = self.keys[0].address if max_learners else NO_ADMITTER
        self.contract, self.deployed = self.chain.deploy(self.keys[0], [
            [k.address for k in self.keys[:n]], num, den, *quorum, vote_period, propose_period, selector, seed,
            max_learners, admitter])
        self.f = self.contract.functions

    def send(self, who: int, call):
        return self.chain.send(self.keys[who], call)

    def sign(self, who: int, round_index: int, approve: bool, model_hash: bytes = HASH, voter=None) -> SignedVote:
        return sign_vote(self.keys[who], self.chain.chain_id, self.contract.address, round_index,
                         who if voter is None else voter, model_hash, approve)

    def finalize(self, who: int, round_index: int, votes):
        return self.send(who, self.f.finalize(round_index, [v.as_call_arg() for v in votes]))

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
    assert d.reverts(1, d.f.finalize(0, [])) == "no proposal to finalize"
    assert d.reverts(0, d.f.propose(1, HASH)) == "round not open yet"
    assert d.reverts(0, d.f.propose(0, b"\x00" * 32)) == "empty model hash"
    d.send(0, d.f.propose(0, HASH))
    assert d.reverts(0, d.f.propose(0, HASH)) == "already proposed"
    yes, no = d.sign(1, 0, True), d.sign(2, 0, False)
    call = lambda votes: d.f.finalize(0, [v.as_call_arg() for v in votes])  # noqa: E731
    assert d.reverts(1, call([yes, no])) == "voting still open"  # learner 3 has not voted, deadline ahead
    assert d.reverts(4, call([yes, no, d.sign(3, 0, True)])) == "not a learner"
    assert d.reverts(1, call([no, yes, d.sign(3, 0, True)])) == "votes must be in increasing voter order, once each"
    assert d.reverts(1, call([yes, yes, no])) == "votes must be in increasing voter order, once each"
    assert d.reverts(1, call([d.sign(0, 0, True), yes, no])) == "the proposer does not vote"
    assert d.reverts(1, call([yes, no, d.sign(1, 0, True, voter=3)])) == "bad vote signature"  # 1 signs as 3
    assert d.reverts(1, call([yes, no, d.sign(3, 0, True, model_hash=b"\x22" * 32)])) == "bad vote signature"
    assert d.reverts(1, call([yes, no, d.sign(3, 1, True)])) == "bad vote signature"  # another round's vote
    other = Deployment(n=4)  # the same vote signed for another experiment does not count here
    assert d.reverts(1, call([yes, no, other.sign(3, 0, True)])) == "bad vote signature"
    deadline = d.events("Proposed")[0]["deadline"]
    d.chain.advance_to(deadline + 1)
    d.finalize(3, 0, [yes, no])  # 1 for, 1 against, 1 silent: V = 2 >= 3/2 and 1/2 >= 1/2 -> accepted (tie rule)
    assert d.reverts(3, call([yes, no])) == "round already closed"
    (fin,) = d.events("Finalized")
    assert (fin["accepted"], fin["approvals"], fin["rejections"], fin["abstentions"], fin["caller"]) == \
        (True, 1, 1, 1, 3)
    assert fin["model_hash"] == HASH
    voted = d.events("Voted")
    assert [(v["voter"], v["vote"], v["r"], v["s"]) for v in voted] == [(1, 1, yes.r, yes.s), (2, 2, no.r, no.s)]
    assert d.f.current_model().call() == HASH and d.f.n_accepted().call() == 1
    assert d.f.current_round().call() == 1 and d.f.current_proposer().call() == 1
    names = [e["name"] for e in read_events(d.contract)]
    assert names == ["LearnerAdded"] * 4 + ["Configured", "RoundOpened", "Proposed", "Voted", "Voted",
                                            "Finalized", "RoundOpened"]
    assert d.reverts(0, d.f.admit(d.keys[4].address)) == "late joining is not allowed"
    assert d.f.max_learners().call() == 0 and d.f.n_learners().call() == d.f.round_learners().call() == 4


def test_early_finalize_once_every_vote_is_in_and_the_digest_is_eip712():
    d = Deployment(n=3)
    d.send(0, d.f.propose(0, HASH))
    votes = [d.sign(1, 0, False), d.sign(2, 0, False)]
    assert d.f.vote_digest(0, HASH, 2).call() != d.f.vote_digest(1, HASH, 2).call()
    assert signer_of(votes[0], d.chain.chain_id, d.contract.address) == d.keys[1].address
    d.finalize(1, 0, votes)  # everyone voted: no need to wait for the deadline
    (fin,) = d.events("Finalized")
    assert fin["accepted"] is False and fin["rejections"] == 2
    assert d.f.current_model().call() == b"\x00" * 32


def test_endpoints_are_announced_by_learners_only():
    d = Deployment(n=2)
    d.send(1, d.f.set_endpoint("127.0.0.1:5001"))
    assert d.reverts(2, d.f.set_endpoint("127.0.0.1:5002")) == "not a learner"
    assert d.events("Endpoint") == [{"learner": 1, "endpoint": "127.0.0.1:5001"}]


THRESHOLDS_AND_QUORUMS = [((1, 2), (1, 2)), ((2, 3), (1, 3)), ((7, 10), (3, 4)), ((0, 1), (0, 1)), ((1, 1), (1, 1))]


@pytest.mark.slow
@pytest.mark.parametrize("threshold, quorum", THRESHOLDS_AND_QUORUMS)
@pytest.mark.parametrize("n_voters", [1, 2, 3, 4])
def test_the_contract_tally_is_colearn_protocol_tally(threshold, quorum, n_voters):
    """Every (approvals, rejections, silent) split of 1..4 possible voters: the contract decides exactly as
    colearn.protocol's default rule (QUORUM) with the same exact fractions."""
    d = Deployment(n=n_voters + 1, num=threshold[0], den=threshold[1], quorum=quorum, vote_period=2)
    d.send(0, d.f.propose(0, HASH))
    d.chain.advance_to(d.events("Proposed")[0]["deadline"] + 1)
    snapshot = d.chain.tester.take_snapshot()
    cases = 0
    for approvals in range(n_voters + 1):
        for rejections in range(n_voters + 1 - approvals):
            votes = [True] * approvals + [False] * rejections + [None] * (n_voters - approvals - rejections)
            signed = [d.sign(i, 0, vote) for i, vote in enumerate(votes, start=1) if vote is not None]
            receipt = d.finalize(0, 0, signed).receipt
            fin = dict(d.contract.events.Finalized().process_receipt(receipt, errors=DISCARD)[0]["args"])
            expected = tally(votes, Fraction(*threshold), quorum=Fraction(*quorum))
            assert tally(votes, threshold[0] / threshold[1], quorum=quorum[0] / quorum[1]) == expected
            assert fin["accepted"] == expected.accepted, (votes, threshold, quorum)
            assert (fin["approvals"], fin["rejections"], fin["abstentions"]) == \
                (expected.approvals, expected.rejections, expected.abstentions)
            d.chain.tester.revert_to_snapshot(snapshot)
            d.chain._nonces.clear()  # the chain forgot the finalize transaction
            cases += 1
    assert cases == (n_voters + 1) * (n_voters + 2) // 2


@pytest.mark.slow
@pytest.mark.parametrize("threshold, quorum", THRESHOLDS_AND_QUORUMS)
@pytest.mark.parametrize("n_initial, joiners", [(2, 1), (3, 1), (3, 2)])
def test_the_contract_tally_is_colearn_protocol_tally_when_the_learner_count_grows(threshold, quorum, n_initial,
                                                                                   joiners):
    """Learners join while round 0 is open: round 0 is tallied with the learners it opened with (the joiners'
    votes are refused, their absence is no abstention), round 1 with every learner; every split of round 1's
    voters decides as colearn.protocol's tally over that round's voters."""
    d = Deployment(n=n_initial, num=threshold[0], den=threshold[1], quorum=quorum, vote_period=2,
                   max_learners=n_initial + joiners, outsiders=joiners)
    n = n_initial + joiners
    d.send(0, d.f.propose(0, HASH))
    for j in range(n_initial, n):
        d.send(0, d.f.admit(d.keys[j].address))
    assert d.f.round_state().call()[6] == n_initial and d.f.n_learners().call() == n
    late = d.sign(n_initial, 0, True)
    # a joiner's vote in place of a voter's: the count fits round 0, the joiner is no voter of it
    assert d.reverts(1, d.f.finalize(0, [d.sign(i, 0, True).as_call_arg() for i in range(1, n_initial - 1)]
                                     + [late.as_call_arg()])) == "not a voter of this round (joined after it opened)"
    d.finalize(1, 0, [d.sign(i, 0, False) for i in range(1, n_initial)])  # every vote of round 0 is in: no wait
    (fin0,) = d.events("Finalized")
    expected0 = tally([False] * (n_initial - 1), Fraction(*threshold), quorum=Fraction(*quorum))
    assert (fin0["accepted"], fin0["approvals"], fin0["rejections"], fin0["abstentions"]) == \
        (expected0.accepted, expected0.approvals, expected0.rejections, expected0.abstentions)
    assert d.f.round_state().call()[6] == n and d.f.current_proposer().call() == 1 % n
    proposer = 1 % n
    d.send(proposer, d.f.propose(1, HASH))
    d.chain.advance_to(d.events("Proposed")[1]["deadline"] + 1)
    snapshot = d.chain.tester.take_snapshot()
    voters = [i for i in range(n) if i != proposer]
    cases = 0
    for approvals in range(len(voters) + 1):
        for rejections in range(len(voters) + 1 - approvals):
            votes = [True] * approvals + [False] * rejections + [None] * (len(voters) - approvals - rejections)
            signed = [d.sign(i, 1, vote) for i, vote in zip(voters, votes) if vote is not None]
            receipt = d.finalize(proposer, 1, signed).receipt
            fin = dict(d.contract.events.Finalized().process_receipt(receipt, errors=DISCARD)[0]["args"])
            expected = tally(votes, Fraction(*threshold), quorum=Fraction(*quorum))
            assert fin["accepted"] == expected.accepted, (votes, threshold, quorum)
            assert (fin["approvals"], fin["rejections"], fin["abstentions"]) == \
                (expected.approvals, expected.rejections, expected.abstentions)
            d.chain.tester.revert_to_snapshot(snapshot)
            d.chain._nonces.clear()
            cases += 1
    assert cases == n * (n + 1) // 2


def test_late_joining_admission_the_cap_and_the_first_round():
    d = Deployment(n=3, max_learners=5, outsiders=3)  # keys 3, 4, 5 are outsiders; key 0 deployed and admits
    assert d.f.max_learners().call() == 5 and d.f.admitter().call() == d.keys[0].address
    joiner = d.keys[3].address
    assert d.reverts(1, d.f.admit(joiner)) == "only the admitter admits learners"
    assert d.reverts(3, d.f.admit(joiner)) == "only the admitter admits learners"  # nobody admits itself
    assert d.reverts(0, d.f.admit(NO_ADMITTER)) == "zero address"
    assert d.reverts(0, d.f.admit(d.keys[2].address)) == "already a learner"
    assert d.reverts(3, d.f.set_endpoint("127.0.0.1:5003")) == "not a learner"
    d.send(0, d.f.propose(0, HASH))
    result = d.send(0, d.f.admit(joiner))
    assert d.reverts(0, d.f.admit(joiner)) == "already a learner"
    assert d.events("LearnerJoined") == [{"index": 3, "learner": joiner, "first_round": 1}]
    assert result.gas_used < 100_000  # 78.6k: the learner's slot, its index, the packed round, the event
    assert d.f.index_of(joiner).call() == 3 and d.f.learners(3).call() == joiner
    assert (d.f.n_learners().call(), d.f.round_learners().call(), d.f.round_state().call()[6]) == (4, 3, 3)
    d.send(3, d.f.set_endpoint("127.0.0.1:5003"))  # it announces itself before its first round
    assert d.reverts(3, d.f.finalize(0, [d.sign(1, 0, True).as_call_arg(), d.sign(3, 0, True).as_call_arg()])) \
        == "not a voter of this round (joined after it opened)"
    d.finalize(1, 0, [d.sign(1, 0, True), d.sign(2, 0, True)])  # round 0's two voters: complete, no deadline
    assert d.events("Finalized")[0]["abstentions"] == 0
    assert d.f.round_learners().call() == 4 and d.f.current_proposer().call() == 1
    d.send(1, d.f.propose(1, HASH))
    two = [d.sign(0, 1, True).as_call_arg(), d.sign(2, 1, True).as_call_arg()]
    assert d.reverts(1, d.f.finalize(1, two)) == "voting still open"  # round 1 waits for the joiner's vote too
    d.finalize(1, 1, [d.sign(0, 1, True), d.sign(2, 1, False), d.sign(3, 1, True)])
    assert [(v["voter"], v["vote"]) for v in d.events("Voted")][-3:] == [(0, 1), (2, 2), (3, 1)]
    d.send(2, d.f.skip(2, False))
    assert d.f.current_proposer().call() == 3  # round 3 % 4: the joiner proposes
    d.send(3, d.f.propose(3, HASH))
    d.send(0, d.f.admit(d.keys[4].address))
    assert d.reverts(0, d.f.admit(d.keys[5].address)) == "learner cap reached"
    assert d.f.round_learners().call() == 4 and d.f.n_learners().call() == 5
    opened = [(e["round_index"], e["proposer"]) for e in d.events("RoundOpened")]
    config = {"n_learners": 3, "selector": 0, "seed": 0}
    sizes = {0: 3, 1: 4, 2: 4, 3: 4}
    assert opened == [(r, _selected(config, set(), r, sizes[r])) for r in range(4)]


def test_a_halted_experiment_admits_nobody():
    d = Deployment(n=2, max_learners=3)
    d.send(0, d.f.skip(0, True))
    d.send(1, d.f.skip(1, True))
    assert d.reverts(0, d.f.admit(d.keys[2].address)) == "every learner retired"


def test_skip_retire_and_the_round_robin_that_skips_retired_learners():
    d = Deployment(n=3, propose_period=4)
    assert d.reverts(1, d.f.skip(0, False)) == "proposer still has time"
    assert d.reverts(1, d.f.skip(0, True)) == "only the proposer can retire itself"
    d.send(0, d.f.skip(0, True))  # learner 0's budget is spent
    assert d.f.retired(0).call() is True
    assert d.f.current_proposer().call() == 1
    d.send(1, d.f.propose(1, HASH))
    assert d.reverts(1, d.f.skip(1, False)) == "already proposed"
    d.finalize(0, 1, [d.sign(0, 1, True), d.sign(2, 1, True)])  # a retired learner still votes
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
    ("quorum", "quorum must be at most 1"),
    ("cap", "max_learners must exceed the initial learners"),
    ("bound", "max_learners is above the contract's bound"),
    ("no_admitter", "late joining needs an admitter"),
    ("admitter", "an admitter needs late joining"),
])
def test_constructor_refuses_bad_settings(args, reason):
    keys = throwaway_keys(3)
    chain = embedded_chain([k.address for k in keys])
    learners = [k.address for k in keys[:2]]
    settings = {"dup": [[learners[0], learners[0]], 1, 2, 1, 2], "one": [learners[:1], 1, 2, 1, 2],
                "num": [learners, 3, 2, 1, 2], "den": [learners, 0, 0, 1, 2],
                "quorum": [learners, 1, 2, 3, 2]}.get(args)
    join = {"cap": [2, keys[0].address], "bound": [129, keys[0].address], "no_admitter": [3, NO_ADMITTER],
            "admitter": [0, keys[0].address]}.get(args, [0, NO_ADMITTER])
    with pytest.raises(LedgerRevert, match=reason):
        chain.deploy(keys[0], [*(settings or [learners, 1, 2, 1, 2]), 10, 10, 0, 0, *join])


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


def test_a_key_used_by_two_processes_re_reads_its_nonce_instead_of_failing():
    """The admitter may also run an agent with the same key: each sender's cached nonce goes stale when the other
    sends, and the next send re-reads it from the node instead of failing for good."""
    from colearn.ledger.chain import Chain

    d = Deployment(n=2, max_learners=3)
    other = Chain(d.chain.w3, "embedded", d.chain.tester)  # `colearn admit` in another process, same key
    d.send(0, d.f.set_endpoint("127.0.0.1:5000"))
    other.send(d.keys[0], d.f.admit(d.keys[2].address))
    d.send(0, d.f.set_endpoint("127.0.0.1:5001"))  # its cached nonce was taken: re-read, sent
    assert [e["endpoint"] for e in d.events("Endpoint")] == ["127.0.0.1:5000", "127.0.0.1:5001"]
