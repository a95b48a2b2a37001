"""What colearn 0.2.x's Keras image tasks (``keras_mnist``, ``keras_cifar10``) share: the 2D convolutional model,
the loaders of a learner's folder and the learner built on them."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from colearn.compat.task_files import local_folder, read_arrays, three_way, train_vote_test
from colearn.ml_interface import DiffPrivConfig
from colearn_keras.keras_learner import KerasLearner
from colearn_keras.utils import make_loader, make_optimizer

IMAGES, LABELS = "images", "labels"  # <name>.npy in each learner's folder (0.2.x: images.pickle, labels.pickle)
Loaders = Tuple[tf.data.Dataset, tf.data.Dataset, tf.data.Dataset]


def conv2d_model(input_shape: Sequence[int], learning_rate: float, n_classes: int = 10) -> keras.Model:
    """0.2.x's image model: three 5x5 convolutions (32, 32, 64) with 2x2 max pooling, dense 64, softmax;
    Adam, sparse categorical cross-entropy and sparse categorical accuracy."""
    inputs = keras.Input(shape=tuple(input_shape), name="Input")
    x = inputs
    for index, filters in enumerate((32, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, (5, 5), activation="relu", padding="same", name=f"Conv{index}_1")(x)
        x = keras.layers.MaxPooling2D((2, 2), name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="fc2")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy()],
                  optimizer=make_optimizer(keras.optimizers.Adam, lr=learning_rate))
    return model


def image_loaders(location: Optional[str], train_ratio: float, vote_ratio: float, batch_size: int,
                  task: str, **kwargs: object) -> Loaders:
    """Train, vote and test datasets of the images in ``location`` (0.2.x's older ``train_folder`` works too)."""
    folder = local_folder(location if location is not None else kwargs.get("train_folder"), task)
    images, labels = read_arrays(folder, (IMAGES, LABELS), task)
    parts = three_way(len(images), train_ratio, vote_ratio, task)
    return tuple(make_loader(images[part], labels[part], batch_size) for part in parts)  # type: ignore[return-value]


def image_learner(data_loaders: Sequence[tf.data.Dataset], input_shape: Sequence[int], steps_per_epoch: int,
                  vote_batches: int, learning_rate: float,
                  diff_priv_config: Optional[DiffPrivConfig]) -> KerasLearner:
    """A learner on (train, vote, test) loaders; with two loaders (0.2.x's older tasks) the second votes."""
    train, vote, test = train_vote_test(data_loaders)
    if isinstance(diff_priv_config, dict):
        diff_priv_config = DiffPrivConfig(**diff_priv_config)
    return KerasLearner(model=conv2d_model(input_shape, learning_rate), train_loader=train, vote_loader=vote,
                        test_loader=test, criterion="sparse_categorical_accuracy", minimise_criterion=False,
                        model_fit_kwargs={"steps_per_epoch": steps_per_epoch},
                        model_evaluate_kwargs={"steps": vote_batches}, diff_priv_config=diff_priv_config)


def normalized(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1], as 0.2.x's ``normalize_img`` made them."""
    return (np.asarray(images, dtype=np.float32) / 255.0).astype(np.float32)
