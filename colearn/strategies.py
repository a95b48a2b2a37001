"""Built-in strategies beyond the plain threshold rule: decisions that also weigh each learner's record.

Both are opt in (the default is :class:`~colearn.protocol.ThresholdStrategy`, which the ledger contract follows
too), and both are pure functions of the history, so every backend and a replay decide the same.

:class:`ExcludingStrategy` stops counting the votes of a voter that keeps rejecting what the other voters alone
would accept (see :func:`overruled_rejections`), so that voters who reject everything, or everything but their
own clique's proposals, cannot hold learning back.

:class:`SuspendingStrategy` decides each round like :class:`~colearn.protocol.ThresholdStrategy` and, in
:meth:`eligible_proposers`, passes over a learner whose latest proposals the record condemns: refused before the
vote (non-finite, unusable, a crash) or rejected by the voters. After ``s`` such proposals in a row a learner sits
out ``2**s - 1`` of its turns, so an attacker whose poison is always rejected stops costing the honest learners a
round in every cycle, while an honest learner whose proposal was unlucky once loses one turn.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Dict, Mapping, Optional, Sequence, Tuple

from colearn.protocol import (DEFAULT_QUORUM, RoundOutcome, Strategy, Tally, TallyRule, ThresholdStrategy,
                              VoteVerdict, exact, tally)


def proposal_condemned(outcome: RoundOutcome) -> bool:
    """True when a round's proposal counts against its proposer: refused before the vote, or voted down."""
    if outcome.proposer is None or outcome.accepted:
        return False
    if outcome.proposer_error is not None:
        return "DP_BUDGET_EXCEEDED" not in outcome.proposer_error  # a spent budget is not misbehaviour
    votes = [verdict.vote for verdict in outcome.verdicts.values()]
    return votes.count(False) > votes.count(True)  # the voters said no (a round without quorum is nobody's fault)


def strikes(history: Sequence[RoundOutcome]) -> Dict[int, Tuple[int, int]]:
    """Per proposer: (consecutive condemned proposals, round of the latest), from the history."""
    record: Dict[int, Tuple[int, int]] = {}
    for outcome in history:
        if outcome.proposer is None:
            continue
        count = record.get(outcome.proposer, (0, 0))[0]
        record[outcome.proposer] = (count + 1 if proposal_condemned(outcome) else 0, outcome.round_index)
    return record


class SuspendingStrategy(Strategy):
    """The threshold rule, and learners whose latest proposals were condemned sit out some turns."""

    name = "suspending"

    def __init__(self, vote_threshold: float = 0.5, rule: TallyRule = TallyRule.QUORUM,
                 quorum: float = DEFAULT_QUORUM, max_strikes: int = 4, decider: Optional[Strategy] = None):
        """``decider``: the strategy that decides each round (default: the threshold rule with these settings)."""
        self.decider = decider if decider is not None else ThresholdStrategy(vote_threshold, rule, quorum)
        self.max_strikes = max_strikes
        if decider is not None:
            self.name = f"suspending+{decider.name}"

    def _suspended(self, round_index: int, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        suspended = []
        for learner, (count, last) in strikes(history).items():
            if count and round_index < last + n_learners * (2 ** min(count, self.max_strikes) - 1) + 1:
                suspended.append(learner)
        return tuple(sorted(suspended))

    def eligible_proposers(self, round_index: int, n_learners: int, candidates: Sequence[int],
                           history: Sequence[RoundOutcome]) -> Sequence[int]:
        suspended = set(self._suspended(round_index, n_learners, history))
        eligible = [i for i in candidates if i not in suspended]
        return eligible or list(candidates)  # never leave nobody: the votes still guard every proposal

    def decide(self, proposer: int, verdicts: Mapping[int, VoteVerdict], n_learners: int,
               history: Sequence[RoundOutcome]) -> Tally:
        return self.decider.decide(proposer, verdicts, n_learners, history)

    def flagged(self, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        """Learners suspended from proposing in the next round, and those the deciding strategy flags."""
        next_round = history[-1].round_index + 1 if history else 0
        suspended = self._suspended(next_round, n_learners, history)
        return tuple(sorted(set(suspended) | set(self.decider.flagged(n_learners, history))))


def overruled_rejections(history: Sequence[RoundOutcome], vote_threshold: float) -> Dict[int, Tuple[int, int]]:
    """Per voter: (proposals it rejected, proposals the *other* valid voters alone approved at the threshold).

    The second count is the voter's record: the rounds where its vote mattered against everyone else's. An honest
    voter rejects some of them (its data differ); a voter that rejects everything rejects all of them, and a
    clique that approves only its own rejects every one an honest learner proposed. Abstentions count nowhere.
    """
    threshold = exact(vote_threshold)
    record: Dict[int, Tuple[int, int]] = {}
    for outcome in history:
        valid = {voter: verdict.vote for voter, verdict in outcome.verdicts.items() if verdict.vote is not None}
        approvals = sum(1 for vote in valid.values() if vote)
        for voter, vote in valid.items():
            others = len(valid) - 1
            others_approving = approvals - (1 if vote else 0)
            if others == 0 or Fraction(others_approving, others) < threshold:
                continue
            rejected, counted = record.get(voter, (0, 0))
            record[voter] = (rejected + (0 if vote else 1), counted + 1)
    return record


class ExcludingStrategy(Strategy):
    """The threshold rule over the voters whose record does not condemn them.

    A voter is condemned when, over at least ``min_record`` proposals that the other voters alone approved, it
    rejected more than ``max_overruled`` of them (:func:`overruled_rejections`). Its votes are then left out of the
    tally (quorum and threshold alike) until its record recovers: it keeps voting and the record keeps counting.
    At most a third of the possible voters (``(n - 1) // 3``, the worst records first, then the lowest index) are
    excluded at once, so the strategy can never hand the decision to a minority.
    """

    name = "excluding"

    def __init__(self, vote_threshold: float = 0.5, rule: TallyRule = TallyRule.QUORUM,
                 quorum: float = DEFAULT_QUORUM, max_overruled: float = 0.6, min_record: int = 3):
        if not 0.0 <= max_overruled < 1.0:
            raise ValueError(f"max_overruled must be in [0, 1), got {max_overruled!r}")
        if min_record < 1:
            raise ValueError(f"min_record must be at least 1, got {min_record!r}")
        self.vote_threshold, self.rule, self.quorum = vote_threshold, TallyRule(rule), quorum
        self.max_overruled, self.min_record = max_overruled, min_record

    def condemned(self, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        """The voters whose votes the next round does not count."""
        limit = exact(self.max_overruled)
        ranked = sorted((-Fraction(rejected, counted), voter)
                        for voter, (rejected, counted) in overruled_rejections(history, self.vote_threshold).items()
                        if counted >= self.min_record and Fraction(rejected, counted) > limit)
        return tuple(sorted(voter for _, voter in ranked[:(n_learners - 1) // 3]))

    def decide(self, proposer: int, verdicts: Mapping[int, VoteVerdict], n_learners: int,
               history: Sequence[RoundOutcome]) -> Tally:
        excluded = set(self.condemned(n_learners, history)) - {proposer}
        votes = [verdicts[i].vote if i in verdicts else None
                 for i in range(n_learners) if i != proposer and i not in excluded]
        decision = tally(votes, self.vote_threshold, self.rule, n_learners=n_learners - len(excluded),
                         quorum=self.quorum)
        return Tally(decision.approvals, decision.rejections, decision.abstentions, decision.accepted,
                     tuple(sorted(excluded)))

    def flagged(self, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        """Voters whose votes the next round will not count."""
        return self.condemned(n_learners, history)


__all__ = ["ExcludingStrategy", "SuspendingStrategy", "overruled_rejections", "proposal_condemned", "strikes"]
