"""What is voted on is exactly what is adopted: a proposal is frozen once, fingerprinted, and every learner gets
its own read-only view of it.

:func:`freeze` copies a proposal's arrays once into arrays nobody can write (``writeable=False`` on arrays
that own their data), :func:`private_view` gives each learner fresh containers over read-only views of them
(a learner can neither write the arrays nor swap an entry for everyone else), and :func:`nonfinite_reason`
refuses NaN or infinite weights before anyone votes. Values that are not numpy arrays (e.g. tensors of an
in-process 0.2.x learner) are deep-copied for each learner instead.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Optional

import numpy as np

from colearn.ml_interface import Weights

MAX_DEPTH = 64


def _map(value: Any, leaf: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"weights nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return type(value)((key, _map(item, leaf, depth + 1)) for key, item in value.items()) \
            if type(value) is not dict else {key: _map(item, leaf, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(_map(item, leaf, depth + 1) for item in value)
    return leaf(value)


def _frozen_leaf(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.array(value, copy=True, order="C")  # owns its data, so nobody else can re-enable writing
        array.flags.writeable = False
        return array
    if isinstance(value, (int, float, str, bytes, bool, type(None), np.generic)):
        return value
    return copy.deepcopy(value)


def _view_leaf(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.flags.writeable:  # not frozen by freeze(): the learner gets a copy of its own
            return value.copy()
        return value.view()  # a view of a read-only array that owns its data cannot be made writeable
    if isinstance(value, (int, float, str, bytes, bool, type(None), np.generic)):
        return value
    return copy.deepcopy(value)


def freeze(weights: Weights) -> Weights:
    """A copy of ``weights`` whose arrays are read-only and shared with nobody (the proposer keeps its own)."""
    return Weights(weights=_map(weights.weights, _frozen_leaf), training_summary=weights.training_summary)


def private_view(weights: Weights) -> Weights:
    """A learner's own handle on a frozen proposal: new containers, read-only views (copies if not frozen)."""
    summary = weights.training_summary.model_copy(deep=True) if weights.training_summary is not None else None
    return Weights(weights=_map(weights.weights, _view_leaf), training_summary=summary)


def nonfinite_reason(weights: Any) -> Optional[str]:
    """Why ``weights`` hold NaN or infinite values (naming where), or None when every value is finite."""
    found: list[str] = []

    def check(value: Any, where: str, depth: int = 0) -> None:
        if found or depth > MAX_DEPTH:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, f"{where}[{key!r}]", depth + 1)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                check(item, f"{where}[{i}]", depth + 1)
        elif isinstance(value, float):
            if not math.isfinite(value):
                found.append(where)
        elif isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
            array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                found.append(where)

    check(weights, "weights")
    return f"non-finite values (NaN or infinity) in {found[0]}" if found else None


__all__ = ["freeze", "private_view", "nonfinite_reason"]
