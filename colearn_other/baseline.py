"""The "trained alone" baseline: what each learner reaches on its own share, without the collective.

Works for any registered learner name: it builds each learner as an experiment would (same factory,
same per-learner seed) and calls its own MLI, propose then accept, ``n_rounds`` times. That is as much
training as the collective model gets in ``n_rounds`` rounds, so the comparison favours the baseline.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from colearn.data.types import LearnerData
from colearn.ml_interface import score_value


def default_learner_seed(seed: int, index: int) -> int:
    """The per-learner seed experiments use (``colearn.runner.learner_seed`` when available)."""
    try:
        from colearn.runner import learner_seed
    except ImportError:  # pragma: no cover - the runner is part of colearn
        return seed * 1000 + index
    return learner_seed(seed, index)


def train_alone_baseline(learner_name: str, learner_datas: Sequence[LearnerData], seed: int, n_rounds: int,
                         *, learner_params: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Train every learner alone on its own share for ``n_rounds`` proposals (each accepted).

    Returns one dict per learner: ``learner``, ``vote_score`` and ``test_score`` of its final model
    (scored on its own vote and test sets, as in an experiment).
    """
    from colearn.registry import make_learner

    if n_rounds < 0:
        raise ValueError(f"n_rounds must be >= 0, got {n_rounds}")
    rows = []
    for index, data in enumerate(learner_datas):
        learner = make_learner(learner_name, data, seed=default_learner_seed(seed, index), **(learner_params or {}))
        for _ in range(n_rounds):
            learner.mli_accept_weights(learner.mli_propose_weights())
        verdict = learner.mli_test_weights(learner.mli_get_current_weights())
        rows.append({"learner": index, "vote_score": score_value(verdict.vote_score, verdict.criterion),
                     "test_score": score_value(verdict.test_score, verdict.criterion)})
    return rows


def format_comparison(collective_test_scores: Sequence[Optional[float]], alone: Sequence[Dict[str, Any]]) -> str:
    """A plain-text table: each learner's final collective test score beside its trained-alone score."""
    lines = [f"{'learner':>7}  {'collective':>10}  {'alone':>7}  {'gain':>7}"]
    for row, collective in zip(alone, collective_test_scores):
        gain = "" if collective is None else f"{collective - row['test_score']:+7.3f}"
        shown = "   n/a" if collective is None else f"{collective:10.3f}"
        lines.append(f"{row['learner']:>7}  {shown:>10}  {row['test_score']:7.3f}  {gain:>7}")
    known = [c for c in collective_test_scores if c is not None]
    if known and alone:
        mean_c, mean_a = sum(known) / len(known), sum(r["test_score"] for r in alone) / len(alone)
        lines.append(f"{'mean':>7}  {mean_c:10.3f}  {mean_a:7.3f}  {mean_c - mean_a:+7.3f}")
    return "\n".join(lines)


__all__ = ["train_alone_baseline", "format_comparison", "default_learner_seed"]
