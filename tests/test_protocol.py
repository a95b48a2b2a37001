"""The protocol's pure logic: tally rule, ties, abstentions, selectors, configuration errors."""
import pytest
from pydantic import ValidationError

from colearn.ml_interface import ProposedWeights, Weights
from colearn.protocol import (ProtocolConfig, TallyRule, interpret_vote, make_selector, round_robin,
                              seeded_random, select_proposer, tally)


@pytest.mark.parametrize("votes, threshold, accepted", [
    ([True, True, False, False], 0.5, True),     # tie exactly at the threshold accepts
    ([True, False, False, False], 0.5, False),
    ([True, True, True, False], 0.75, True),
    ([True, True, False, False], 0.51, False),
    ([True] * 7 + [False] * 3, 0.7, True),      # 7/10 at threshold 0.7: exact, no float rounding
    ([True] * 6 + [False] * 4, 0.7, False),
    ([False, False], 0.0, True),                # threshold 0: any valid vote accepts
    ([True, True, False], 1.0, False),          # threshold 1: unanimity among voters
    ([True, True, None], 1.0, True),            # abstainers are not voters
    ([None, None, None], 0.0, False),           # everybody abstains: rejected whatever the threshold
    ([], 0.5, False),
])
def test_tally_fraction_of_voters(votes, threshold, accepted):
    result = tally(votes, threshold)
    assert result.accepted is accepted
    assert result.approvals + result.rejections + result.abstentions == len(votes)


def test_tally_counts():
    result = tally([True, None, False, True], 0.5)
    assert (result.approvals, result.rejections, result.abstentions, result.voters) == (2, 1, 1, 3)


def test_legacy_rule_counts_abstentions_against():
    # 0.2.x: approvals >= (n - 1) * threshold, with n the number of learners
    assert tally([True, None, None], 0.5, TallyRule.LEGACY, n_learners=4).accepted is False
    assert tally([True, True, None], 0.5, TallyRule.LEGACY, n_learners=4).accepted is True
    assert tally([True, None], 0.5, TallyRule.LEGACY, n_learners=3).accepted is True
    assert tally([], 0.5, TallyRule.LEGACY, n_learners=1).accepted is True   # 0.2.x: one learner always accepts


def test_round_robin_skips_ineligible():
    assert [round_robin(r, 4, [0, 1, 2, 3]) for r in range(5)] == [0, 1, 2, 3, 0]
    assert round_robin(1, 4, [0, 2, 3]) == 2
    with pytest.raises(ValueError, match="eligible"):
        round_robin(0, 3, [])


def test_seeded_random_is_reproducible_and_varies_with_seed():
    picks = [seeded_random(7)(r, 10, list(range(10))) for r in range(50)]
    assert picks == [seeded_random(7)(r, 10, list(range(10))) for r in range(50)]
    assert picks != [seeded_random(8)(r, 10, list(range(10))) for r in range(50)]
    assert set(picks) > {0}


def test_user_selector_must_return_an_eligible_learner():
    config = ProtocolConfig(selector=lambda r, n, eligible: 99)
    with pytest.raises(ValueError, match="99"):
        select_proposer(make_selector(config), 0, 3, [0, 1, 2])


@pytest.mark.parametrize("kwargs, field", [
    ({"vote_threshold": 1.5}, "vote_threshold"),
    ({"vote_threshold": -0.1}, "vote_threshold"),
    ({"vote_threshold": float("nan")}, "vote_threshold"),
    ({"selector": "lottery"}, "selector"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        ProtocolConfig(**kwargs)


def test_interpret_vote_turns_garbage_into_abstentions():
    weights = Weights(weights=1)
    assert interpret_vote(ProposedWeights(weights=weights, vote_score=1.0, test_score=2.0, vote=True)).vote is True
    assert interpret_vote(RuntimeError("boom")).error == "RuntimeError: boom"
    assert interpret_vote("yes").vote is None
    nan = interpret_vote(ProposedWeights(weights=weights, vote_score=float("nan"), test_score=1.0, vote=True))
    assert nan.vote is False and "non-finite" in nan.error  # a proposal that cannot be scored is rejected
    keyed = ProposedWeights(weights=weights, vote_score={"acc": 0.5}, test_score={"acc": 0.25}, criterion="acc",
                            vote=False)
    assert interpret_vote(keyed) == interpret_vote(keyed) and interpret_vote(keyed).test_score == 0.25
