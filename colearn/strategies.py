"""Built-in strategies beyond the plain threshold rule: decisions that also weigh each learner's record.

:class:`SuspendingStrategy` (opt in; the default is :class:`~colearn.protocol.ThresholdStrategy`, which the ledger
contract follows too) decides each round like :class:`~colearn.protocol.ThresholdStrategy`
and, in :meth:`eligible_proposers`, passes over a learner whose latest proposals the record condemns: refused
before the vote (non-finite, unusable, a crash) or rejected by the voters. After ``s`` such proposals in a row a
learner sits out ``2**s - 1`` of its turns, so an attacker whose poison is always rejected stops costing the
honest learners a round in every cycle, while an honest learner whose proposal was unlucky once loses one turn.
Everything is a pure function of the history, so every backend and a replay decide the same.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

from colearn.protocol import (DEFAULT_QUORUM, RoundOutcome, Strategy, Tally, TallyRule, ThresholdStrategy,
                              VoteVerdict)


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
                 quorum: float = DEFAULT_QUORUM, max_strikes: int = 4):
        self.threshold = ThresholdStrategy(vote_threshold, rule, quorum)
        self.max_strikes = max_strikes

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
        return self.threshold.decide(proposer, verdicts, n_learners, history)

    def flagged(self, n_learners: int, history: Sequence[RoundOutcome]) -> Tuple[int, ...]:
        """Learners suspended from proposing in the next round."""
        next_round = history[-1].round_index + 1 if history else 0
        return self._suspended(next_round, n_learners, history)


__all__ = ["SuspendingStrategy", "proposal_condemned", "strikes"]
