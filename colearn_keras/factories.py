"""Registered Keras learner factories (``keras-mlp``, ``keras-cnn``): ``factory(data, *, seed, **params)``."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import keras

from colearn.data.types import LearnerData
from colearn.ml_interface import DiffPrivConfig
from colearn_keras.keras_learner import KerasLearner

MINIMISE = {"loss": True, "accuracy": False}


def build_mlp(n_features: int, n_classes: int, hidden_sizes: Sequence[int] = (64,)) -> keras.Model:
    """A ReLU multilayer perceptron with a softmax output."""
    layers: list = [keras.Input((n_features,), name="features")]
    layers += [keras.layers.Dense(int(size), activation="relu", name=f"hidden_{i}")
               for i, size in enumerate(hidden_sizes)]
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name="mlp")


def build_cnn(image_shape: Sequence[int], n_classes: int, filters: Sequence[int] = (16, 32),
              dense_size: int = 0) -> keras.Model:
    """A small CNN on flat rows: reshape to ``(*image_shape, 1)``, conv+pool blocks, softmax output."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    layers: list = [keras.Input((math.prod(shape),), name="features"), keras.layers.Reshape(shape, name="image")]
    for i, count in enumerate(filters):
        layers.append(keras.layers.Conv2D(int(count), 3, padding="same", activation="relu", name=f"conv_{i}"))
        layers.append(keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}"))
    layers.append(keras.layers.Flatten(name="flatten"))
    if dense_size:
        layers.append(keras.layers.Dense(int(dense_size), activation="relu", name="dense"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name="cnn")


def _dp_config(diff_priv_config: Union[DiffPrivConfig, dict, None], target_epsilon: Optional[float],
               target_delta: float, max_grad_norm: float, noise_multiplier: float) -> Optional[DiffPrivConfig]:
    if diff_priv_config is not None:
        return diff_priv_config if isinstance(diff_priv_config, DiffPrivConfig) else DiffPrivConfig(**diff_priv_config)
    if target_epsilon is None:
        return None
    return DiffPrivConfig(target_epsilon=target_epsilon, target_delta=target_delta, max_grad_norm=max_grad_norm,
                          noise_multiplier=noise_multiplier)


def make_learner(model: keras.Model, data: LearnerData, *, seed: int, learning_rate: float = 0.01,
                 optimizer: str = "adam", batch_size: int = 32, epochs: int = 1,
                 steps_per_epoch: Optional[int] = None, criterion: str = "loss", eval_batch_size: int = 1024,
                 need_reset_optimizer: bool = True, diff_priv_config: Union[DiffPrivConfig, dict, None] = None,
                 target_epsilon: Optional[float] = None, target_delta: float = 1e-5, max_grad_norm: float = 1.0,
                 noise_multiplier: float = 1.0) -> KerasLearner:
    """Compile ``model`` (softmax output, sparse categorical cross-entropy, accuracy) and wrap it for ``data``.

    ``criterion`` is ``"loss"`` (minimised) or ``"accuracy"`` (maximised). Differential privacy is on when
    ``diff_priv_config`` or ``target_epsilon`` is given.
    """
    if criterion not in MINIMISE:
        raise ValueError(f"criterion must be one of {sorted(MINIMISE)}, got {criterion!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    opt = (keras.optimizers.Adam(learning_rate) if optimizer == "adam" else keras.optimizers.SGD(learning_rate))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_kwargs: dict[str, Any] = {"epochs": int(epochs), "batch_size": int(batch_size)}
    if steps_per_epoch:
        fit_kwargs["steps_per_epoch"] = int(steps_per_epoch)
    return KerasLearner(model, (data.x_train, data.y_train), (data.x_vote, data.y_vote),
                        (data.x_test, data.y_test), need_reset_optimizer=need_reset_optimizer,
                        minimise_criterion=MINIMISE[criterion], criterion=criterion,
                        model_fit_kwargs=fit_kwargs, model_evaluate_kwargs={"batch_size": int(eval_batch_size)},
                        diff_priv_config=_dp_config(diff_priv_config, target_epsilon, target_delta, max_grad_norm,
                                                    noise_multiplier),
                        seed=seed)


def _seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(int(seed) % 2**32)


def make_mlp_learner(data: LearnerData, *, seed: int, hidden_sizes: Sequence[int] = (64,),
                     **params: Any) -> KerasLearner:
    """An MLP learner; ``params`` are :func:`make_learner`'s (learning_rate, batch_size, epochs, dp, ...)."""
    _seed_everything(seed)
    return make_learner(build_mlp(data.n_features, data.n_classes, hidden_sizes), data, seed=seed, **params)


def make_cnn_learner(data: LearnerData, *, seed: int, filters: Sequence[int] = (16, 32), dense_size: int = 0,
                     **params: Any) -> KerasLearner:
    """A small CNN learner on image rows (``data.image_shape``, e.g. digits' 8x8, becomes (8, 8, 1))."""
    if data.image_shape is None:
        raise ValueError("data.image_shape is needed for a CNN (e.g. (8, 8) for digits); use keras-mlp otherwise")
    _seed_everything(seed)
    return make_learner(build_cnn(data.image_shape, data.n_classes, filters, dense_size), data, seed=seed, **params)
