"""colearn 0.2.x's MNIST task for Keras: ``prepare_data_loaders``, ``prepare_learner``, ``split_to_folders``,
registered as ``KERAS_MNIST`` in :class:`colearn_grpc.factory_registry.FactoryRegistry`.

Local data only: ``split_to_folders(n_learners, data_dir=...)`` reads the four MNIST IDX files (or an ``.npz``
with ``x_train``, ``y_train``, ``x_test``, ``y_test``) from ``data_dir`` and writes each learner's images and
labels as ``images.npy`` / ``labels.npy`` (0.2.x downloaded MNIST with tensorflow_datasets and wrote pickles).
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import numpy as np

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import source_folder, write_parts
from colearn.data.mnist import load_mnist
from colearn.ml_interface import DiffPrivConfig
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_keras.image_tasks import IMAGES, LABELS, Loaders, conv2d_model, image_learner, image_loaders, normalized
from colearn_keras.keras_learner import KerasLearner

TASK = "colearn_keras.keras_mnist"
INPUT_SHAPE = (28, 28, 1)
IMAGE_FL, LABEL_FL = f"{IMAGES}.npy", f"{LABELS}.npy"


class ModelType(Enum):
    CONV2D = 1


def _get_keras_mnist_conv2D_model(learning_rate: float):  # noqa: N802 (0.2.x's name)
    return conv2d_model(INPUT_SHAPE, learning_rate)


@FactoryRegistry.register_dataloader("KERAS_MNIST")
def prepare_data_loaders(location: Optional[str] = None, train_ratio: float = 0.8, vote_ratio: float = 0.1,
                         batch_size: int = 32, **_kwargs: object) -> Loaders:
    """Train, vote and test datasets of the learner folder ``location`` (written by :func:`split_to_folders`)."""
    return image_loaders(location, train_ratio, vote_ratio, batch_size, TASK, **_kwargs)


@FactoryRegistry.register_model_architecture("KERAS_MNIST", ["KERAS_MNIST"])
def prepare_learner(data_loaders: Loaders, steps_per_epoch: int = 100, vote_batches: int = 10,
                    learning_rate: float = 0.001, diff_priv_config: Optional[DiffPrivConfig] = None,
                    num_microbatches: int = 4, **_kwargs: object) -> KerasLearner:
    """A :class:`KerasLearner` with 0.2.x's convolutional model, voting on sparse categorical accuracy.

    ``num_microbatches`` is accepted and ignored: colearn's DP-SGD clips every example's gradient (one
    example per microbatch), which is at least as private.
    """
    return image_learner(data_loaders, INPUT_SHAPE, steps_per_epoch, vote_batches, learning_rate, diff_priv_config)


def split_to_folders(n_learners: int, data_split: Optional[List[float]] = None, shuffle_seed: Optional[int] = None,
                     output_folder: Optional[Path] = None, data_dir: Optional[str] = None,
                     **_kwargs: object) -> List[str]:
    """Split MNIST (train and test sets together, as 0.2.x did) among ``n_learners`` folders and return them."""
    source = source_folder(data_dir, TASK, "the MNIST IDX files (train-images-idx3-ubyte[.gz], ...) or an .npz")
    data = load_mnist(source)
    images = normalized(np.concatenate([data.x_train, data.x_test]))[..., np.newaxis]
    labels = np.concatenate([data.y_train, data.y_test]).astype(np.int64)
    return write_parts({IMAGES: images, LABELS: labels}, n_learners, data_split, shuffle_seed, output_folder, "mnist")
