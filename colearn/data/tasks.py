"""Embedded classification tasks that need no download: scikit-learn's digits, breast cancer, iris, wine.

Every task's features are float32 in [0, 1] and its labels int64 in ``0..n_classes-1``:

- ``digits``: 8x8 images with pixel values 0..16, divided by 16 (the fixed scale of the sensor).
- ``breast_cancer``, ``iris``, ``wine``: each feature min-max scaled to [0, 1] with the minimum and
  maximum of the whole embedded data set. This is a fixed, documented transform of a fixed data set
  (like dividing pixels by 16), not a statistic fitted on a training split, so it leaks nothing that
  a learner could not know; the bounds are kept on the task (``feature_min``/``feature_max``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

DEFAULT_TASK = "digits"


@dataclass
class Task:
    """A whole labelled data set, before it is split among learners."""

    name: str
    x: np.ndarray  # (n_samples, n_features) float32 in [0, 1]
    y: np.ndarray  # (n_samples,) int64 in 0..n_classes-1
    n_classes: int
    image_shape: Optional[Tuple[int, ...]] = None  # (8, 8) for digits: lets CNN learners reshape rows
    description: str = ""
    class_names: Optional[Tuple[str, ...]] = None  # original label of each class index, when known
    feature_min: Optional[np.ndarray] = field(default=None, repr=False)  # min-max scaling bounds, if used
    feature_max: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"task {self.name!r}: x has shape {self.x.shape} and y {self.y.shape}; "
                             "need x (n_samples, n_features...) and y (n_samples,)")
        if self.n_classes < 2:
            raise ValueError(f"task {self.name!r} has {self.n_classes} class(es); classification needs at least 2")


def min_max_scale(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale each column to [0, 1] (constant columns become 0); return the scaled float32 array and the bounds."""
    x = np.asarray(x, dtype=np.float64)
    low, high = x.min(axis=0), x.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = np.clip((x - low) / span, 0.0, 1.0).astype(np.float32)
    return scaled, low, high


def _digits() -> Task:
    from sklearn.datasets import load_digits

    data = load_digits()
    return Task("digits", (data.data / 16.0).astype(np.float32), data.target.astype(np.int64), 10, (8, 8),
                "handwritten digits 0-9, 8x8 grey-scale images (1797 samples, 64 features), pixels / 16",
                tuple(str(c) for c in data.target_names))


def _tabular(name: str, loader: Callable, description: str) -> Task:
    data = loader()
    x, low, high = min_max_scale(data.data)
    classes = tuple(str(c) for c in data.target_names)
    return Task(name, x, data.target.astype(np.int64), len(classes), None, description, classes, low, high)


def _breast_cancer() -> Task:
    from sklearn.datasets import load_breast_cancer

    return _tabular("breast_cancer", load_breast_cancer,
                    "Wisconsin breast cancer, malignant vs benign (569 samples, 30 features), min-max scaled")


def _iris() -> Task:
    from sklearn.datasets import load_iris

    return _tabular("iris", load_iris, "iris flowers, 3 species (150 samples, 4 features), min-max scaled")


def _wine() -> Task:
    from sklearn.datasets import load_wine

    return _tabular("wine", load_wine, "wine cultivars, 3 classes (178 samples, 13 features), min-max scaled")


TASKS: Dict[str, Callable[[], Task]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "iris": _iris,
    "wine": _wine,
}


def load_task(name: str = DEFAULT_TASK) -> Task:
    """Load the embedded task ``name`` (one of :data:`TASKS`; ``digits`` by default). Needs no network."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["Task", "TASKS", "DEFAULT_TASK", "load_task", "min_max_scale"]
