"""colearn 0.2.x's training loop helpers, as thin shims over :mod:`colearn.standalone_driver`.

The loop that 0.2.x examples write keeps working::

    set_equal_weights(learners)
    results = Results()
    results.data.append(initial_result(learners))
    for round_index in range(n_rounds):
        results.data.append(collective_learning_round(learners, vote_threshold, round_index))

Unlike 0.2.8, a round's ``Result`` records the scores of the models the learners HOLD after the round:
after a rejected round, their unchanged previous scores (0.2.8 recorded the rejected proposal's).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights, score_value
from colearn.standalone_driver import evaluate_initial, forget, run_one_round, run_round_record
from colearn.utils.results import Result


def _floats(values: Sequence[Optional[float]]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def set_equal_weights(learners: Sequence[MachineLearningInterface]) -> None:
    """Give every learner the first learner's current weights; the driver forgets their held scores."""
    first = learners[0].mli_get_current_weights()
    for learner in learners[1:]:
        learner.mli_accept_weights(first)
    forget(learners)


def initial_result(learners: Sequence[MachineLearningInterface]) -> Result:
    """Score each learner's held model once (votes all True, as in 0.2.x); starts a fresh record."""
    results = evaluate_initial(learners)
    result = Result()
    result.votes = [True] * len(learners)
    result.vote_scores = _floats(results.initial_vote_scores)
    result.test_scores = _floats(results.initial_test_scores)
    return result


def collective_learning_round(learners: Sequence[MachineLearningInterface], vote_threshold: float,
                              round_index: int) -> Result:
    """Run one collective-learning round (proposer ``round_index % n``, 0.2.x's tally rule) and record it."""
    print("Doing collective learning round")
    record, _, current = run_round_record(round_index, learners, vote_threshold)
    result = Result()
    result.vote = record.accepted
    result.votes = list(record.votes)
    result.vote_scores = _floats(record.held_vote_scores)
    result.test_scores = _floats(record.held_test_scores)
    result.training_summaries = [w.training_summary for w in current
                                 if isinstance(w, Weights) and w.training_summary is not None]
    result.block_proposer = record.proposer
    return result


def individual_training_round(learners: Sequence[MachineLearningInterface], round_index: int) -> Result:
    """Each learner trains alone and adopts its own proposal (no voting). A learner that raises stops the
    round, as in 0.2.x. The driver then forgets the held scores, so the next collective round re-scores."""
    print("Doing individual training pass")
    result = Result()
    try:
        for learner in learners:
            weights = learner.mli_propose_weights()
            verdict: ProposedWeights = learner.mli_test_weights(weights)
            learner.mli_accept_weights(weights)
            result.votes.append(True)
            result.vote_scores.append(score_value(verdict.vote_score, verdict.criterion))
            result.test_scores.append(score_value(verdict.test_score, verdict.criterion))
    finally:
        forget(learners)
    return result


__all__ = ["collective_learning_round", "individual_training_round", "initial_result", "run_one_round",
           "set_equal_weights"]
