"""Data for experiments: embedded tasks, local-file loaders, and splits among learners."""
from colearn.data.types import LearnerData

__all__ = ["LearnerData"]
