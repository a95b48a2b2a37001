"""Data for experiments: embedded tasks, local-file loaders, and splits among learners."""
from colearn.data.loaders import DataFileError, load_csv, load_npz
from colearn.data.splits import PARTITIONS, class_histogram, partition_indices, split_learner_data
from colearn.data.tasks import DEFAULT_TASK, TASKS, Task, load_task
from colearn.data.types import LearnerData

__all__ = ["LearnerData", "Task", "TASKS", "DEFAULT_TASK", "load_task", "load_csv", "load_npz", "DataFileError",
           "PARTITIONS", "partition_indices", "split_learner_data", "class_histogram"]
