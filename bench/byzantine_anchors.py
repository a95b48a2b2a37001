"""The anchors of the attack benchmark: FedAvg, coordinate-wise median and Krum on the same learners.

Each round every learner proposes from the shared model (attackers send what their attack says), updates with
non-finite values are dropped (the usual sanity check, so the anchors are not beaten by NaN alone), the rest are
aggregated entry by entry, and every learner adopts the aggregate.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from bench.attacks import _as_numpy


def _arrays(weights: Any) -> Dict[str, np.ndarray]:
    return {key: np.asarray(_as_numpy(value)) for key, value in weights.weights.items()}


def _finite(tree: Dict[str, np.ndarray]) -> bool:
    return all(np.isfinite(a).all() for a in tree.values() if a.dtype.kind == "f")


def _krum_choice(trees: List[Dict[str, np.ndarray]], n_attackers: int) -> int:
    flat = [np.concatenate([np.ravel(t[k]).astype(np.float64) for k in sorted(t)]) for t in trees]
    neighbours = max(1, len(flat) - n_attackers - 2)
    scores = []
    for i, a in enumerate(flat):
        distances = sorted(float(np.sum((a - b) ** 2)) for j, b in enumerate(flat) if j != i)
        scores.append(sum(distances[:neighbours]))
    return int(np.argmin(scores))


def aggregate(method: str, trees: List[Dict[str, np.ndarray]], n_attackers: int) -> Dict[str, np.ndarray]:
    """The aggregate of ``trees`` by ``method`` (``fedavg``, ``median`` or ``krum``)."""
    if method == "krum":
        return trees[_krum_choice(trees, n_attackers)]
    combine: Callable[..., np.ndarray] = {"fedavg": np.mean, "median": np.median}[method]
    out = {}
    for key, first in trees[0].items():
        stacked = np.stack([t[key] for t in trees]).astype(np.float64)
        out[key] = np.asarray(combine(stacked, axis=0)).astype(first.dtype)
    return out


def run_anchor(method: str, learners: Sequence[Any], bad: Sequence[int], n_rounds: int) -> None:
    """``n_rounds`` rounds of ``method`` over ``learners`` (indices in ``bad`` attack); changes the learners."""
    from colearn.ml_interface import ProposalRefused, Weights

    for _ in range(n_rounds):
        trees = [_arrays(learner.mli_propose_weights()) for learner in learners]
        usable = [t for t in trees if _finite(t)]
        if not usable:
            continue
        template = learners[0].mli_get_current_weights().weights
        shared = aggregate(method, usable, len(bad))
        for learner in learners:  # each its own copy, as a server sends each client its own
            tree = type(template)((key, np.array(shared[key], copy=True)) for key in template)
            try:
                learner.mli_accept_weights(Weights(weights=tree))
            except ProposalRefused:  # e.g. an implausible step counter in the aggregate: the client keeps its model
                pass


__all__ = ["aggregate", "run_anchor"]
