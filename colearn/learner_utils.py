"""Pieces every learner needs, written once: the vote rule, a score cache for accept, weight checks."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from colearn.encoding import placeholder, weights_digest
from colearn.ml_interface import DiffPrivConfig, ProposalRefused

DpSettings = Union[None, DiffPrivConfig, Mapping[str, float]]
DP_DEFAULTS = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}


def vote_for(new_score: float, current_score: Optional[float], minimise: bool = False) -> bool:
    """The one vote rule for colearn's learners: approve a proposal that is not worse than the held model.

    A tie approves (a proposal that scores exactly as well is harmless and keeps training moving).
    With no current score (nothing held yet), approve.
    """
    if current_score is None:
        return True
    return new_score <= current_score if minimise else new_score >= current_score


class ScoreCache:
    """Remembers the scores a learner computed for recent weights, keyed by their content digest,
    so that accepting weights it has already tested does not evaluate them again."""

    def __init__(self, size: int = 4):
        self.size = size
        self._entries: "OrderedDict[str, Tuple[float, float]]" = OrderedDict()

    @staticmethod
    def key(weights: Any) -> str:
        return weights_digest(weights)

    def put(self, weights: Any, vote_score: float, test_score: float, key: Optional[str] = None) -> None:
        key = key or self.key(weights)
        self._entries[key] = (vote_score, test_score)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, weights: Any, key: Optional[str] = None) -> Optional[Tuple[float, float]]:
        return self._entries.get(key or self.key(weights))


class WeightsMismatchError(ProposalRefused):
    """Received weights do not fit the learner's model (names, shapes or dtypes differ)."""


def check_arrays_match(received: Sequence[Any], expected: Sequence[np.ndarray],
                       names: Optional[Sequence[str]] = None, *, cast_safe: bool = False) -> list[np.ndarray]:
    """Check that ``received`` arrays have the shapes and dtypes of ``expected`` and only finite values; return
    them as arrays.

    Raises :class:`WeightsMismatchError` naming the first offending entry. With ``cast_safe``, a dtype
    that numpy can cast safely (e.g. float32 -> float64) is converted instead of refused.
    """
    if not isinstance(received, (list, tuple)):
        raise WeightsMismatchError(f"expected a list of {len(expected)} arrays, got {type(received).__name__}")
    if len(received) != len(expected):
        raise WeightsMismatchError(f"expected {len(expected)} arrays, got {len(received)}")
    labels = list(names) if names is not None else [f"#{i}" for i in range(len(expected))]
    checked = []
    for label, got, want in zip(labels, received, expected):
        if not isinstance(got, np.ndarray):
            raise WeightsMismatchError(f"weight {label}: expected a numpy array, got {type(got).__name__}")
        if got.shape != want.shape:
            raise WeightsMismatchError(f"weight {label}: shape {got.shape} does not match the model's {want.shape}")
        if got.dtype != want.dtype:
            if not (cast_safe and np.can_cast(got.dtype, want.dtype, casting="safe")):
                raise WeightsMismatchError(f"weight {label}: dtype {got.dtype} does not match the model's {want.dtype}")
            got = got.astype(want.dtype)
        if got.dtype.kind in "fc" and not np.isfinite(got).all():
            raise WeightsMismatchError(f"weight {label}: contains NaN or infinite values")
        checked.append(got)
    return checked


def check_named_arrays_match(received: Any, expected: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Like :func:`check_arrays_match` for a name -> array mapping (e.g. a state dict); names must match in order."""
    if not isinstance(received, Mapping):
        raise WeightsMismatchError(f"expected a mapping of {len(expected)} named arrays, got {type(received).__name__}")
    if list(received) != list(expected):
        missing = [k for k in expected if k not in received]
        extra = [k for k in received if k not in expected]
        raise WeightsMismatchError(f"weight names differ from the model's: missing {missing}, unexpected {extra}"
                                   if missing or extra else "weight names are in a different order than the model's")
    arrays = check_arrays_match(list(received.values()), list(expected.values()), list(expected))
    return dict(zip(expected, arrays))


def dp_config(dp: DpSettings) -> Optional[DiffPrivConfig]:
    """The ``dp`` setting of the learner factories as a :class:`DiffPrivConfig`: a config, or a mapping with ``target_epsilon`` and
    optionally ``noise_multiplier`` (1.0), ``max_grad_norm`` (1.0) and ``delta`` (1e-5)."""
    if dp is None or isinstance(dp, DiffPrivConfig):
        return dp
    if not isinstance(dp, Mapping) or "target_epsilon" not in dp:
        raise ValueError(f"dp must be a mapping with at least 'target_epsilon', got {dp!r}")
    unknown = set(dp) - {"target_epsilon", "noise_multiplier", "max_grad_norm", "delta", "target_delta"}
    if unknown:
        raise ValueError(f"dp has unknown settings {sorted(unknown)}; use target_epsilon, noise_multiplier, "
                         f"max_grad_norm, delta")
    settings = {**DP_DEFAULTS, **dp}
    return DiffPrivConfig(target_epsilon=float(settings["target_epsilon"]),
                          target_delta=float(settings.get("target_delta", settings["delta"])),
                          max_grad_norm=float(settings["max_grad_norm"]),
                          noise_multiplier=float(settings["noise_multiplier"]))


def check_layout(received: Any, expected: Any, where: str = "weights") -> None:
    """Refuse ``received`` unless it has ``expected``'s structure, array dtypes and shapes.

    Raises :class:`WeightsMismatchError` naming the first place that differs.
    """
    if isinstance(expected, np.ndarray):
        if not isinstance(received, np.ndarray):
            raise WeightsMismatchError(f"{where}: expected an array, got {type(received).__name__}")
        if received.dtype != expected.dtype or received.shape != expected.shape:
            raise WeightsMismatchError(f"{where}: got {received.dtype}{list(received.shape)}, the model has "
                                       f"{expected.dtype}{list(expected.shape)}")
        return
    if isinstance(expected, dict):
        if not isinstance(received, dict) or list(received) != list(expected):
            got = list(received) if isinstance(received, dict) else type(received).__name__
            raise WeightsMismatchError(f"{where}: expected keys {list(expected)}, got {got}")
        for key in expected:
            check_layout(received[key], expected[key], f"{where}[{key!r}]")
        return
    if isinstance(expected, (list, tuple)):
        if type(received) is not type(expected) or len(received) != len(expected):
            raise WeightsMismatchError(f"{where}: expected a {type(expected).__name__} of {len(expected)} "
                                       f"items, got {type(received).__name__}"
                                       f"{f' of {len(received)}' if isinstance(received, (list, tuple)) else ''}")
        for i, (got, want) in enumerate(zip(received, expected)):
            check_layout(got, want, f"{where}[{i}]")
        return
    if isinstance(expected, float) and isinstance(received, float):
        return
    if isinstance(expected, np.generic) and isinstance(received, np.generic):
        if received.dtype != expected.dtype:
            raise WeightsMismatchError(f"{where}: got a {received.dtype} scalar, the model has {expected.dtype}")
        return
    if type(received) is not type(expected):
        raise WeightsMismatchError(f"{where}: expected {type(expected).__name__}, got {type(received).__name__}")


def layout_of(value: Any) -> Any:
    """``value`` with every array replaced by a read-only placeholder of its dtype and shape that uses no memory:
    what :func:`check_layout` compares, kept without keeping the data."""
    if isinstance(value, np.ndarray):
        return placeholder(value.dtype, value.shape)
    if isinstance(value, dict):
        return {key: layout_of(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(layout_of(item) for item in value)
    return value


def kept_classes(labels: Sequence[int], n_classes: int, rare_fraction: float) -> list:
    """The classes that make up at least ``rare_fraction`` of ``labels`` (and at least one sample): what a
    restricted-softmax training loss (PyTorch's and Keras' factories) trains; the others' output units stay."""
    if isinstance(rare_fraction, bool) or not isinstance(rare_fraction, (int, float)) or \
            not 0.0 <= rare_fraction < 1.0:
        raise ValueError(f"rare_fraction must be in [0, 1), got {rare_fraction!r}")
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=int(n_classes))
    if len(counts) != int(n_classes):
        raise ValueError(f"labels: found label {len(counts) - 1}, but n_classes is {n_classes}")
    return [int(c) for c in np.flatnonzero(counts >= max(rare_fraction * counts.sum(), 1))]
