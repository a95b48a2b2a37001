"""The "trained alone" baseline: what each learner reaches on its own share, without the collective.

Works for any registered learner name: it builds each learner as an experiment would (same factory,
same per-learner seed) and calls its own MLI, propose then accept, ``n_rounds`` times. That is as much
training as the collective model gets in ``n_rounds`` rounds, so the comparison favours the baseline.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from colearn.backends.base import Backend, Failure
from colearn.data.types import LearnerData
from colearn.ml_interface import Weights, score_value
from colearn.run_config import RunConfig, learner_seed, load_learner_data

if TYPE_CHECKING:
    from colearn.results import ExperimentResults


def default_learner_seed(seed: int, index: int) -> int:
    """The per-learner seed experiments use (:func:`colearn.run_config.learner_seed`)."""
    return learner_seed(seed, index)


def pooled_test_data(learner_datas: Sequence[LearnerData]) -> LearnerData:
    """A learner's data whose test set is every learner's test set together (train/vote: learner 0's)."""
    first = learner_datas[0]
    return LearnerData(first.x_train, first.y_train, first.x_vote, first.y_vote,
                       np.concatenate([d.x_test for d in learner_datas]),
                       np.concatenate([d.y_test for d in learner_datas]), first.n_classes, first.image_shape)


def pooled_test_score(learner_name: str, learner_datas: Sequence[LearnerData], weights: Weights, seed: int,
                      *, learner_params: Optional[Dict[str, Any]] = None) -> float:
    """Accuracy of ``weights`` on all learners' test sets together (what a model knows beyond its own share)."""
    from colearn.registry import make_learner

    judge = make_learner(learner_name, pooled_test_data(learner_datas), seed=seed, **(learner_params or {}))
    verdict = judge.mli_test_weights(weights)
    return score_value(verdict.test_score, verdict.criterion)


def train_alone_baseline(learner_name: str, learner_datas: Sequence[LearnerData], seed: int, n_rounds: int,
                         *, learner_params: Optional[Dict[str, Any]] = None,
                         pooled_test: bool = False) -> List[Dict[str, Any]]:
    """Train every learner alone on its own share for ``n_rounds`` proposals (each accepted).

    Returns one dict per learner: ``learner``, ``vote_score`` and ``test_score`` of its final model
    (scored on its own vote and test sets, as in an experiment) and, with ``pooled_test``,
    ``pooled_test_score``: its accuracy on every learner's test set together. Under non-IID splits a
    learner's own test set looks like its training data, which flatters a model trained alone; the
    pooled score shows what it does not know.
    """
    from colearn.registry import make_learner

    if n_rounds < 0:
        raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
    rows = []
    for index, data in enumerate(learner_datas):
        learner = make_learner(learner_name, data, seed=default_learner_seed(seed, index), **(learner_params or {}))
        for _ in range(n_rounds):
            weights = learner.mli_propose_weights()
            summary = weights.training_summary
            if summary is not None and summary.error_code is not None:  # e.g. its DP budget is spent
                break
            learner.mli_accept_weights(weights)
        verdict = learner.mli_test_weights(learner.mli_get_current_weights())
        row = {"learner": index, "vote_score": score_value(verdict.vote_score, verdict.criterion),
               "test_score": score_value(verdict.test_score, verdict.criterion)}
        if pooled_test:
            row["pooled_test_score"] = pooled_test_score(learner_name, learner_datas,
                                                         learner.mli_get_current_weights(), seed,
                                                         learner_params=learner_params)
        rows.append(row)
    return rows


def format_comparison(collective_test_scores: Sequence[Optional[float]], alone: Sequence[Dict[str, Any]],
                      collective_pooled: Optional[float] = None) -> str:
    """A plain-text table: each learner's final collective test score beside its trained-alone score
    (and, when the rows have it, the trained-alone score on all learners' test sets)."""
    pooled = all("pooled_test_score" in row for row in alone) and bool(alone)
    header = f"{'learner':>7}  {'collective':>10}  {'alone':>7}  {'gain':>7}"
    lines = [header + ("  alone, all tests" if pooled else "")]
    for row, collective in zip(alone, collective_test_scores):
        gain = "" if collective is None else f"{collective - row['test_score']:+7.3f}"
        shown = "   n/a" if collective is None else f"{collective:10.3f}"
        extra = f"  {row['pooled_test_score']:17.3f}" if pooled else ""
        lines.append(f"{row['learner']:>7}  {shown:>10}  {row['test_score']:7.3f}  {gain:>7}{extra}")
    known = [c for c in collective_test_scores if c is not None]
    if known and alone:
        mean_c, mean_a = sum(known) / len(known), sum(r["test_score"] for r in alone) / len(alone)
        extra = f"  {sum(r['pooled_test_score'] for r in alone) / len(alone):17.3f}" if pooled else ""
        lines.append(f"{'mean':>7}  {mean_c:10.3f}  {mean_a:7.3f}  {mean_c - mean_a:+7.3f}{extra}")
    if collective_pooled is not None:
        lines.append(f"collective model on all learners' test sets: {collective_pooled:.3f}")
    return "\n".join(lines)


def add_baseline(results: ExperimentResults, config: RunConfig, backend: Backend,
                 datas: Optional[List[LearnerData]] = None) -> None:
    """Train each learner alone on its own share and store the comparison in ``results.extra``.

    ``baseline_alone``: per learner, its trained-alone test score on its own test set and on every
    learner's test set together; ``collective_pooled_test_score``: learner 0's held model on that pool.
    """
    datas = datas if datas is not None else load_learner_data(config)
    results.extra["baseline_alone"] = train_alone_baseline(config.learner, datas, config.seed, config.n_rounds,
                                                           learner_params=config.learner_params, pooled_test=True)
    held = backend.current_weights(0)
    if not isinstance(held, Failure):
        results.extra["collective_pooled_test_score"] = pooled_test_score(
            config.learner, datas, held, learner_seed(config.seed, 0), learner_params=config.learner_params)


__all__ = ["add_baseline", "train_alone_baseline", "format_comparison", "default_learner_seed", "pooled_test_data",
           "pooled_test_score"]
