"""The collective-learning protocol as pure functions: proposer selection, vote validation, tally.

No I/O and no knowledge of where learners run. The driver (:mod:`colearn.experiment`) feeds these
functions with what the backend returned and records the outcome.

Tie rule: a round is accepted when ``approvals / voters >= vote_threshold``, where voters are the
learners other than the proposer that returned a valid vote. A tie exactly at the threshold is
accepted (2 of 4 approve at threshold 0.5: accepted). A round in which every voter abstains (or
there are no voters) is rejected whatever the threshold, because nobody vouched for the proposal.
The threshold is read as the decimal you wrote (``0.7`` is exactly 7/10), so ties are exact.

colearn 0.2.x's ``run_one_round`` kept its own rule, ``approvals >= (n_learners - 1) * threshold``
with abstentions counting against; it is available as ``TallyRule.LEGACY``.
"""
from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from colearn.ml_interface import ErrorCodes, ProposedWeights, Weights, score_value

ProposerSelector = Callable[[int, int, Sequence[int]], int]
"""``selector(round_index, n_learners, eligible) -> learner index``; must return a member of ``eligible``."""


class TallyRule(str, Enum):
    """How votes become a decision (see :func:`tally`)."""

    QUORUM = "quorum"
    FRACTION_OF_VOTERS = "fraction_of_voters"
    LEGACY = "legacy"


DEFAULT_QUORUM = 0.5


class ProtocolConfig(BaseModel):
    """The protocol's settings. Invalid values raise a ``ValidationError`` naming the field."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    vote_threshold: float = Field(0.5, ge=0.0, le=1.0, description="approving fraction of voters needed")
    selector: Union[str, Callable[..., int]] = Field(
        "round_robin", description="'round_robin', 'random' (seeded) or a callable(round, n, eligible) -> index")
    seed: int = Field(0, description="seed for the 'random' selector")
    tally_rule: TallyRule = TallyRule.QUORUM
    quorum: float = Field(DEFAULT_QUORUM, ge=0.0, le=1.0,
                          description="fraction of the possible voters (all learners but the proposer) that must "
                                      "cast a valid vote for a round to be decided (rule 'quorum')")
    strategy: Optional[Any] = Field(
        None, description="a colearn.protocol.Strategy that decides rounds (default: the threshold rule above)")
    evaluate_proposer: bool = Field(
        True, description="after an accepted round, the proposer scores its own proposal so that its held "
                          "scores are known (it never votes); off saves one evaluation per accepted round")

    @field_validator("vote_threshold", "quorum")
    @classmethod
    def _finite(cls, value: float, info: Any) -> float:
        if not math.isfinite(value):
            raise ValueError(f"{info.field_name} must be a finite number in [0, 1]")
        return value

    @field_validator("strategy")
    @classmethod
    def _is_strategy(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, Strategy):
            raise ValueError(f"strategy must be a colearn.protocol.Strategy, got {type(value).__name__}")
        return value

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in SELECTORS:
            raise ValueError(f"unknown selector {value!r}; choose one of {sorted(SELECTORS)} or pass a callable")
        return value


def round_robin(round_index: int, n_learners: int, eligible: Sequence[int]) -> int:
    """Learner ``round_index % n``, or the next eligible learner after it."""
    allowed = set(eligible)
    for step in range(n_learners):
        candidate = (round_index + step) % n_learners
        if candidate in allowed:
            return candidate
    raise ValueError("no learner is eligible to propose")


def seeded_random(seed: int) -> ProposerSelector:
    """A selector that picks uniformly among eligible learners; the same seed and round give the same pick."""

    def select(round_index: int, n_learners: int, eligible: Sequence[int]) -> int:
        if not eligible:
            raise ValueError("no learner is eligible to propose")
        return random.Random(f"colearn:{seed}:{round_index}").choice(sorted(eligible))

    return select


SELECTORS = {"round_robin": lambda seed: round_robin, "random": seeded_random}


def make_selector(config: ProtocolConfig) -> ProposerSelector:
    """The selector function that ``config.selector`` names (or the callable it holds)."""
    if callable(config.selector):
        return config.selector
    return SELECTORS[config.selector](config.seed)


def select_proposer(selector: ProposerSelector, round_index: int, n_learners: int,
                    eligible: Sequence[int]) -> int:
    """Call the selector and check that it returned an eligible learner."""
    proposer = selector(round_index, n_learners, eligible)
    if proposer not in eligible:
        raise ValueError(f"selector returned learner {proposer!r}, which is not one of the eligible {list(eligible)}")
    return int(proposer)


@dataclass(frozen=True)
class VoteVerdict:
    """One voter's contribution: its vote (None = abstain), the error behind an abstention, its scores."""

    vote: Optional[bool]
    error: Optional[str] = None
    vote_score: Optional[float] = None
    test_score: Optional[float] = None


def interpret_vote(response: Any) -> VoteVerdict:
    """Turn whatever a voter returned into a verdict.

    A voter that could not score the proposal *because of the proposal* rejects it: non-finite scores, or a
    :class:`~colearn.backends.Failure` of kind ``"refused"`` (weights that do not fit its model). Only the
    voter's own failures (it raised, timed out, died, or answered garbage) abstain, so a proposal cannot turn
    honest voters into abstainers and leave the decision to its accomplices.
    """
    if isinstance(response, BaseException):
        return VoteVerdict(None, f"{type(response).__name__}: {response}")
    if not isinstance(response, ProposedWeights):
        error = getattr(response, "error", None)
        if error is not None:
            refused = getattr(response, "kind", None) == "refused"
            return VoteVerdict(False if refused else None, str(error))
        return VoteVerdict(None, f"invalid response: expected ProposedWeights, got {type(response).__name__}")
    try:
        vote_score = score_value(response.vote_score, response.criterion)
        test_score = score_value(response.test_score, response.criterion)
    except (TypeError, ValueError) as exc:
        return VoteVerdict(None, f"invalid scores: {exc}")
    if not (math.isfinite(vote_score) and math.isfinite(test_score)):
        return VoteVerdict(False, f"cannot score the proposal: non-finite scores (vote {vote_score}, "
                                  f"test {test_score})", _finite_or_none(vote_score), _finite_or_none(test_score))
    if response.vote is not None and not isinstance(response.vote, bool):
        return VoteVerdict(None, f"invalid vote {response.vote!r}", vote_score, test_score)
    return VoteVerdict(response.vote, None, vote_score, test_score)


def _finite_or_none(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Tally:
    """A round's decision: the counted votes and whether the proposal is adopted.

    ``excluded``: voters whose votes a strategy did not count (e.g. condemned by their record);
    ``reason``: why a strategy rejected (None when the votes alone decided).
    """

    approvals: int
    rejections: int
    abstentions: int
    accepted: bool
    excluded: Tuple[int, ...] = ()
    reason: Optional[str] = None

    @property
    def voters(self) -> int:
        return self.approvals + self.rejections


def exact(value: float) -> Fraction:
    """The decimal a setting was written as, exactly (``0.7`` is 7/10): ties are decided without float rounding."""
    return Fraction(str(value))


def tally(votes: Sequence[Optional[bool]], vote_threshold: float,
          rule: TallyRule = TallyRule.QUORUM, n_learners: Optional[int] = None,
          quorum: float = DEFAULT_QUORUM) -> Tally:
    """Count the voters' votes (the proposer's is not among them) and decide acceptance.

    ``votes`` holds one entry per possible voter (every learner but the proposer); ``None`` abstains.

    - ``QUORUM`` (default): accepted iff the valid votes ``V = approvals + rejections`` number at least one and at
      least ``quorum * len(votes)``, and ``approvals >= vote_threshold * V``.
    - ``FRACTION_OF_VOTERS``: the same without the quorum (one valid vote can decide).
    - ``LEGACY`` (colearn 0.2.x): accepted iff ``approvals >= (n_learners - 1) * vote_threshold``.

    All comparisons are exact rationals (:func:`exact`); the ledger contract decides the same way.
    """
    approvals = sum(1 for vote in votes if vote is True)
    rejections = sum(1 for vote in votes if vote is False)
    abstentions = len(votes) - approvals - rejections
    threshold = exact(vote_threshold)
    if rule == TallyRule.LEGACY:
        n = len(votes) + 1 if n_learners is None else n_learners
        accepted = approvals >= (n - 1) * threshold
    else:
        voters = approvals + rejections
        quorate = rule != TallyRule.QUORUM or voters >= exact(quorum) * len(votes)
        accepted = voters > 0 and quorate and approvals >= threshold * voters
    return Tally(approvals, rejections, abstentions, bool(accepted))


def proposal_refusal(weights: Any) -> Optional[str]:
    """Why a proposer's answer is not a usable proposal (None if it is one)."""
    if isinstance(weights, BaseException):
        return f"{type(weights).__name__}: {weights}"
    if not isinstance(weights, Weights):
        error = getattr(weights, "error", None)
        return str(error) if error is not None else f"invalid proposal: expected Weights, got {type(weights).__name__}"
    summary = weights.training_summary
    if summary is not None and summary.error_code is not None:
        return summary.error_code.name
    return None


def is_budget_exhausted(weights: Any) -> bool:
    """True when the proposer said it can no longer propose because its DP budget is spent."""
    summary = getattr(weights, "training_summary", None)
    return summary is not None and summary.error_code == ErrorCodes.DP_BUDGET_EXCEEDED


def validate_experiment(n_learners: int, n_rounds: int) -> None:
    """Refuse an experiment that cannot run, before anything runs."""
    if n_learners < 1:
        raise ValueError("learners: need at least one learner, got none")
    if not isinstance(n_rounds, int) or n_rounds < 0:
        raise ValueError(f"n_rounds must be a non-negative integer, got {n_rounds!r}")


@dataclass(frozen=True)
class RoundOutcome:
    """What the protocol's history keeps of a decided round: the part a strategy may base decisions on."""

    round_index: int
    proposer: Optional[int]
    accepted: bool
    verdicts: Mapping[int, VoteVerdict] = field(default_factory=dict)
    proposer_error: Optional[str] = None


class Strategy(abc.ABC):
    """The protocol's decisions as hooks (in the spirit of Flower's ``Strategy``): pure functions of what the
    round brought and of the history of earlier rounds, with no I/O, so every backend and the ledger decide alike.

    Override :meth:`decide` (required), and optionally :meth:`eligible_proposers` and :meth:`flagged`. Failures
    arrive as data: an abstaining voter is a verdict with ``vote=None`` and its error.
    """

    name = "custom"

    def eligible_proposers(self, round_index: int, n_learners: int, candidates: Sequence[int],
                           history: Sequence[RoundOutcome]) -> Sequence[int]:
        """Who may propose this round, among ``candidates`` (learners whose DP budget is not spent)."""
        return candidates

    @abc.abstractmethod
    def decide(self, proposer: int, verdicts: Mapping[int, VoteVerdict], n_learners: int,
               history: Sequence[RoundOutcome]) -> Tally:
        """Decide a round from every possible voter's verdict (all learners but the proposer)."""

    def flagged(self, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        """Learners whose recorded behaviour this strategy holds against them (reported with each round)."""
        return ()


class ThresholdStrategy(Strategy):
    """Decide by :func:`tally` with a threshold, a rule and a quorum: colearn's default."""

    def __init__(self, vote_threshold: float = 0.5, rule: TallyRule = TallyRule.QUORUM,
                 quorum: float = DEFAULT_QUORUM):
        self.vote_threshold, self.rule, self.quorum = vote_threshold, TallyRule(rule), quorum
        self.name = self.rule.value

    def decide(self, proposer: int, verdicts: Mapping[int, VoteVerdict], n_learners: int,
               history: Sequence[RoundOutcome]) -> Tally:
        votes = [verdicts[i].vote if i in verdicts else None for i in range(n_learners) if i != proposer]
        return tally(votes, self.vote_threshold, self.rule, n_learners=n_learners, quorum=self.quorum)


def make_strategy(config: "ProtocolConfig") -> Strategy:
    """The strategy ``config`` asks for: its own ``strategy`` object, or the threshold rule it describes."""
    if config.strategy is not None:
        return config.strategy
    return ThresholdStrategy(config.vote_threshold, config.tally_rule, config.quorum)
