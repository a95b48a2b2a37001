"""colearn 0.2.x's Scania trucks (APS failure) task for Keras, registered as ``KERAS_SCANIA``.

Each learner's folder holds six CSV files with a header row and an index column, as 0.2.x read them:
``X_train_learner.csv``, ``y_train_learner.csv``, ``X_vote_learner.csv``, ``y_vote_learner.csv``,
``X_test_learner.csv``, ``y_test_learner.csv`` (labels 0/1). Differences from 0.2.x: the loss is sparse
categorical cross-entropy on the 0/1 labels (0.2.x compiled categorical cross-entropy on them and voted on a
metric it did not compute) and the vote is on accuracy; the ResNet50 variant (ImageNet weights, a download) and
the prediction data loaders are not provided.
"""
from __future__ import annotations

import os
from typing import Tuple

import keras
import numpy as np
import tensorflow as tf

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import local_folder, require_files
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_keras.keras_learner import KerasLearner
from colearn_keras.utils import make_loader, make_optimizer

TASK = "colearn_keras.keras_scania"
SETS = ("train", "vote", "test")
Loaders = Tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset]


def getf(type_: str, set_: str, data_folder: str) -> str:
    """The path of ``<type_>_<set_>_learner.csv`` in ``data_folder`` (0.2.x's helper)."""
    return os.path.join(data_folder, f"{type_}_{set_}_learner.csv")


def _read_csv(path: str) -> np.ndarray:
    """A CSV with a header row and an index column, as float32 rows without the index."""
    values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    return values[:, 1:].astype(np.float32)


def prepare_loaders_impl(location: str, reshape: bool = False, batch_size: int = 32) -> Loaders:
    """Train, vote and test datasets of the six CSV files in ``location``."""
    folder = local_folder(location, TASK)
    require_files(folder, [f"{t}_{s}_learner.csv" for s in SETS for t in ("X", "y")], TASK,
                  "each learner's X_/y_ train/vote/test CSV files")
    loaders = []
    for set_ in SETS:
        x = _read_csv(getf("X", set_, str(folder)))
        y = _read_csv(getf("y", set_, str(folder))).reshape(-1).astype(np.int64)
        if reshape:
            x = np.expand_dims(np.expand_dims(x, axis=1), axis=3)
        loaders.append(make_loader(x, y, batch_size))
    return tuple(loaders)  # type: ignore[return-value]


@FactoryRegistry.register_dataloader("KERAS_SCANIA")
def prepare_data_loaders(location: str, batch_size: int = 32) -> Loaders:
    """Train, vote and test datasets of the learner folder ``location``."""
    return prepare_loaders_impl(location, reshape=False, batch_size=batch_size)


@FactoryRegistry.register_model_architecture("KERAS_SCANIA", ["KERAS_SCANIA"])
def prepare_learner_mlp(data_loaders: Loaders, steps_per_epoch: int = 100, vote_batches: int = 1,
                        learning_rate: float = 0.001) -> KerasLearner:
    """0.2.x's MLP (dense 100, 50, softmax over 2 classes) in a :class:`KerasLearner` voting on accuracy."""
    n_features = int(data_loaders[0].element_spec[0].shape[-1])
    model = keras.Sequential([keras.Input(shape=(n_features,)), keras.layers.Dense(100, activation="relu"),
                              keras.layers.Dense(50, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=make_optimizer(keras.optimizers.Adam, lr=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return KerasLearner(model=model, train_loader=data_loaders[0], vote_loader=data_loaders[1],
                        test_loader=data_loaders[2], criterion="accuracy", minimise_criterion=False,
                        model_fit_kwargs={"steps_per_epoch": steps_per_epoch},
                        model_evaluate_kwargs={"steps": vote_batches})


prepare_learner = prepare_learner_mlp
