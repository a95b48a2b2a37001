"""ExcludingStrategy: voters that keep rejecting what everyone else would accept stop being counted.

Each test performs the vote attack (voters that reject everything, or everything but their clique's proposals)
and checks that the honest learners' proposals pass again, that the attackers and only they are excluded, and
that the decision stays a pure, replayable function of the history.
"""
from __future__ import annotations

import pytest

from bench.byzantine import build_learners
from colearn import Experiment, ExperimentResults, ProtocolConfig
from colearn.data import load_task, split_learner_data
from colearn.protocol import RoundOutcome, VoteVerdict
from colearn.strategies import ExcludingStrategy, SuspendingStrategy, overruled_rejections
from tests.learners import FixedVoter, PlusOneLearner

ATTACKERS = [7, 8, 9]


def ten_with_three_rejecters():
    return [PlusOneLearner() for _ in range(7)] + [FixedVoter(False) for _ in ATTACKERS]


def test_three_rejecters_of_ten_block_every_honest_proposal_at_075_without_the_strategy():
    results = Experiment(ten_with_three_rejecters(), ProtocolConfig(vote_threshold=0.75)).run(10)
    # honest proposal: 6 of 9 approve (0.67 < 0.75); the attackers' own: 7 of 9
    assert [r.accepted for r in results.rounds] == [False] * 7 + [True] * 3


def test_excluding_strategy_stops_counting_them_once_their_record_condemns_them():
    strategy = ExcludingStrategy(0.75, min_record=3)
    results = Experiment(ten_with_three_rejecters(), ProtocolConfig(strategy=strategy)).run(10)
    assert [r.accepted for r in results.rounds] == [False] * 3 + [True] * 7
    assert all(r.excluded_votes == ATTACKERS for r in results.rounds[3:7])
    assert results.rounds[3].approvals == 6 and results.rounds[3].rejections == 0
    assert all(r.flagged == ATTACKERS for r in results.rounds[2:])  # flagged: not counted from the next round
    assert results.config["protocol"]["strategy"] == "excluding"


def test_at_most_a_third_of_the_voters_can_be_excluded():
    learners = [PlusOneLearner() for _ in range(4)] + [FixedVoter(False) for _ in range(3)]  # 6 voters: cap 2
    results = Experiment(learners, ProtocolConfig(strategy=ExcludingStrategy(0.5, min_record=1))).run(7)
    assert all(len(r.excluded_votes) <= 2 for r in results.rounds)
    assert any(len(r.excluded_votes) == 2 for r in results.rounds)


def test_the_record_counts_only_proposals_the_other_voters_alone_approved():
    yes, no, abstain = VoteVerdict(True), VoteVerdict(False), VoteVerdict(None, "timeout")
    history = [RoundOutcome(0, 0, True, {1: yes, 2: yes, 3: no}),
               RoundOutcome(1, 1, False, {0: no, 2: no, 3: yes}),
               RoundOutcome(2, 2, False, {0: yes, 1: abstain, 3: no})]
    # round 0: 3 rejected what 1 and 2 approved; 1 and 2 each saw one approval of two (0.5: counted)
    # round 1: 0 and 2 each saw one approval of two and rejected; 3 saw only rejections (not counted)
    # round 2: 0 saw only 3's rejection (not counted); 3 rejected what 0 approved; the abstainer counts nowhere
    assert overruled_rejections(history, 0.5) == {1: (0, 1), 2: (1, 2), 3: (2, 2), 0: (1, 1)}
    assert overruled_rejections(history, 0.75) == {3: (2, 2)}


@pytest.mark.parametrize("kwargs, name", [({"max_overruled": 1.0}, "max_overruled"), ({"min_record": 0}, "min_record")])
def test_bad_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ExcludingStrategy(**kwargs)


@pytest.mark.parametrize("make", [lambda: ExcludingStrategy(0.75),
                                  lambda: SuspendingStrategy(0.75, decider=ExcludingStrategy(0.75))])
def test_a_restored_run_continues_with_the_same_exclusions(make):
    whole = Experiment(ten_with_three_rejecters(), ProtocolConfig(strategy=make())).run(12)
    group = ten_with_three_rejecters()
    first = Experiment(group, ProtocolConfig(strategy=make())).run(5)
    second = Experiment(group, ProtocolConfig(strategy=make()))
    second.restore(ExperimentResults.model_validate_json(first.to_json()))
    second.run(7)
    assert second.results.to_json(include_timings=False) == whole.to_json(include_timings=False)
    assert any(r.excluded_votes for r in whole.rounds)


@pytest.fixture(scope="module")
def digits10():
    return split_learner_data(load_task("digits"), 10, partition="dirichlet", alpha=0.3, seed=0)


def honest_accepted(datas, attack, strategy):
    learners, bad = build_learners("sgd", datas, 0, attack, 3)
    results = Experiment(learners, ProtocolConfig(strategy=strategy)).run(20)
    return sum(r.accepted for r in results.rounds if r.proposer not in bad), results, bad


@pytest.mark.parametrize("attack", ["always-reject", "clique"])
def test_real_learners_voting_honest_proposals_down_are_excluded_and_learning_resumes(digits10, attack):
    plain, _, _ = honest_accepted(digits10, attack, None)
    excluding, results, bad = honest_accepted(digits10, attack, ExcludingStrategy(0.5))
    assert excluding > plain
    assert {i for r in results.rounds for i in r.excluded_votes} == set(bad)


def test_honest_learners_on_skewed_shares_are_never_excluded(digits10):
    accepted, results, _ = honest_accepted(digits10, None, ExcludingStrategy(0.5))
    assert not any(r.excluded_votes or r.flagged for r in results.rounds)
    assert accepted == 20
