"""colearn 0.2.x's CIFAR-10 task for Keras: ``prepare_data_loaders``, ``prepare_learner``, ``split_to_folders``,
registered as ``KERAS_CIFAR10`` in :class:`colearn_grpc.factory_registry.FactoryRegistry`.

Local data only: ``split_to_folders(n_learners, data_dir=...)`` reads CIFAR-10's *binary version*
(``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``: records of 1 label byte and 3072 pixel bytes;
the Python version is pickled and is not read) and writes each learner's ``images.npy`` / ``labels.npy``.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import numpy as np

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import TaskDataError, source_folder, write_parts
from colearn.ml_interface import DiffPrivConfig
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_keras.image_tasks import IMAGES, LABELS, Loaders, conv2d_model, image_learner, image_loaders, normalized
from colearn_keras.keras_learner import KerasLearner

TASK = "colearn_keras.keras_cifar10"
INPUT_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3
BATCH_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
IMAGE_FL, LABEL_FL = f"{IMAGES}.npy", f"{LABELS}.npy"


class ModelType(Enum):
    CONV2D = 1


def _get_keras_cifar10_conv2D_model(learning_rate: float):  # noqa: N802 (0.2.x's name)
    return conv2d_model(INPUT_SHAPE, learning_rate)


@FactoryRegistry.register_dataloader("KERAS_CIFAR10")
def prepare_data_loaders(location: Optional[str] = None, train_ratio: float = 0.8, vote_ratio: float = 0.1,
                         batch_size: int = 32, **_kwargs: object) -> Loaders:
    """Train, vote and test datasets of the learner folder ``location`` (written by :func:`split_to_folders`)."""
    return image_loaders(location, train_ratio, vote_ratio, batch_size, TASK, **_kwargs)


@FactoryRegistry.register_model_architecture("KERAS_CIFAR10", ["KERAS_CIFAR10"])
def prepare_learner(data_loaders: Loaders, steps_per_epoch: int = 100, vote_batches: int = 10,
                    learning_rate: float = 0.001, diff_priv_config: Optional[DiffPrivConfig] = None,
                    **_kwargs: object) -> KerasLearner:
    """A :class:`KerasLearner` with 0.2.x's convolutional model, voting on sparse categorical accuracy."""
    return image_learner(data_loaders, INPUT_SHAPE, steps_per_epoch, vote_batches, learning_rate, diff_priv_config)


def read_cifar10_binary(path: Path) -> tuple:
    """Images (n, 32, 32, 3) uint8 and labels (n,) of one CIFAR-10 binary batch file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise TaskDataError(f"{TASK}: {path} is not a CIFAR-10 binary batch ({raw.size} bytes is not a multiple of "
                            f"{RECORD_BYTES})")
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise TaskDataError(f"{TASK}: {path} has labels above 9; is it the CIFAR-100 binary version?")
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def split_to_folders(n_learners: int, data_split: Optional[List[float]] = None, shuffle_seed: Optional[int] = None,
                     output_folder: Optional[Path] = None, data_dir: Optional[str] = None,
                     **_kwargs: object) -> List[str]:
    """Split CIFAR-10 (all six batches, as 0.2.x used train and test together) among ``n_learners`` folders."""
    source = source_folder(data_dir, TASK, f"CIFAR-10's binary batches {BATCH_FILES}")
    found = [source / name for name in BATCH_FILES if (source / name).is_file()]
    if not found:
        raise TaskDataError(f"{TASK}: {source} has none of {BATCH_FILES}; put CIFAR-10's binary version there")
    batches = [read_cifar10_binary(path) for path in found]
    images = normalized(np.concatenate([b[0] for b in batches]))
    labels = np.concatenate([b[1] for b in batches])
    return write_parts({IMAGES: images, LABELS: labels}, n_learners, data_split, shuffle_seed, output_folder,
                       "cifar10")
