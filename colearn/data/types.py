"""The data one learner holds: its private train, vote and test sets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LearnerData:
    """One learner's share, split into train (for proposals), vote (for voting) and test (for reporting)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_vote: np.ndarray
    y_vote: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, ...] | None = None  # e.g. (8, 8) for digits; lets CNN learners reshape rows

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "vote": len(self.y_vote), "test": len(self.y_test)}
