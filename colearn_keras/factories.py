"""Registered Keras learner factories ``keras-mlp`` and ``keras-cnn``: ``factory(data, *, seed, **params)``.

Parameters are named as for ``torch-mlp`` / ``torch-cnn`` (``hidden``, ``lr``, ``batch_size``, ``epochs``,
``batches_per_proposal``, ``metric``, ``dp``, ...), so the CLI takes the same options for both. The same seed
gives the same initial model, batches, DP noise and proposals.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import keras

from colearn.data.types import LearnerData
from colearn.learner_utils import DpSettings, dp_config  # noqa: F401  (dp_config: part of this module's API)
from colearn.vote_rules import NEURAL_NETWORK_VOTE_RULE, make_vote_rule
from colearn_keras.keras_learner import KerasLearner
from colearn_keras.losses import (RestrictedSparseCrossentropy,  # noqa: F401  (part of this module's API)
                                  SmoothedSparseCrossentropy, training_loss)


def build_mlp(n_features: int, n_classes: int, hidden: Sequence[int] = (128,)) -> keras.Model:
    """A ReLU multilayer perceptron ``n_features -> hidden... -> n_classes`` with a softmax output."""
    layers: list = [keras.Input((n_features,), name="features")]
    layers += [keras.layers.Dense(int(size), activation="relu", name=f"hidden_{i}") for i, size in enumerate(hidden)]
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name="mlp")


def image_hwc(data: LearnerData) -> Tuple[int, int, int]:
    """(height, width, channels) of the images behind ``data``'s flat rows (digits: (8, 8, 1))."""
    shape = tuple(int(d) for d in (data.image_shape or ()))
    if len(shape) == 2:
        shape = shape + (1,)
    if len(shape) != 3 or math.prod(shape) != data.n_features:
        raise ValueError(f"data.image_shape {data.image_shape} does not describe {data.n_features} features as "
                         "(height, width) or (height, width, channels); a CNN needs it (use keras-mlp otherwise)")
    return shape  # type: ignore[return-value]


def build_cnn(hwc: Tuple[int, int, int], n_classes: int, channels: Sequence[int] = (16, 32),
              hidden: int = 64) -> keras.Model:
    """Flat rows reshaped to ``hwc``, Conv(3x3)-ReLU-MaxPool blocks, a dense layer and a softmax output."""
    layers: list = [keras.Input((math.prod(hwc),), name="features"), keras.layers.Reshape(hwc, name="image")]
    for i, count in enumerate(channels):
        layers.append(keras.layers.Conv2D(int(count), 3, padding="same", activation="relu", name=f"conv_{i}"))
        layers.append(keras.layers.MaxPooling2D(2, padding="same", name=f"pool_{i}"))
    layers += [keras.layers.Flatten(name="flatten"), keras.layers.Dense(int(hidden), activation="relu", name="dense"),
               keras.layers.Dense(n_classes, activation="softmax", name="output")]
    return keras.Sequential(layers, name="cnn")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def build_learner(data: LearnerData, model: keras.Model, *, seed: int, lr: float = 0.01, batch_size: int = 32,
                  epochs: int = 1, batches_per_proposal: Optional[int] = None, optimizer: str = "adam",
                  metric: str = "accuracy", eval_batch_size: int = 1024, label_smoothing: float = 0.1,
                  need_reset_optimizer: bool = True, dp: DpSettings = None, model_export: str = "auto",
                  vote_rule: Any = None, rare_class_fraction: Optional[float] = 0.02) -> KerasLearner:
    """Compile ``model`` and wrap it in a :class:`KerasLearner` on ``data``.

    ``epochs`` passes over the train set per proposal, unless ``batches_per_proposal`` is given.
    ``metric``: ``"accuracy"`` (vote on accuracy, higher is better) or ``"loss"`` (plain cross-entropy over every
    class, the compiled metric ``"cross_entropy"``: not the training loss, which may leave classes out).
    ``label_smoothing`` of the training loss (0.1 generalises better on small data; accuracy is unaffected).
    ``dp``: differential privacy settings (see :func:`dp_config`); None trains without DP.
    ``vote_rule``: how the learner votes (see :mod:`colearn.vote_rules`; default ``"chance"``).
    ``rare_class_fraction``: train with a restricted softmax
    (:class:`~colearn_keras.losses.RestrictedSparseCrossentropy`) that leaves out classes making up less than this
    fraction of the learner's training labels, so that a proposal does not forget the classes its peers hold
    (``None``: plain cross-entropy). Scores and votes use every class.
    """
    for name, value in (("lr", lr), ("batch_size", batch_size), ("epochs", epochs),
                        ("eval_batch_size", eval_batch_size)):
        _positive(name, value)
    if batches_per_proposal is not None:
        _positive("batches_per_proposal", batches_per_proposal)
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if rare_class_fraction is not None and (isinstance(rare_class_fraction, bool) or not isinstance(
            rare_class_fraction, (int, float)) or not 0.0 <= rare_class_fraction < 1.0):
        raise ValueError(f"rare_class_fraction must be in [0, 1) or None, got {rare_class_fraction!r}")
    optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    loss = training_loss(data.y_train, data.n_classes, rare_class_fraction, label_smoothing)
    metrics: list = ["accuracy"]
    if metric == "loss":  # vote on plain cross-entropy over every class, not on the (restricted) training loss
        metrics.append(keras.metrics.SparseCategoricalCrossentropy(name=LOSS_CRITERION))
    model.compile(optimizer=optimizers[optimizer](learning_rate=float(lr)), loss=loss, metrics=metrics)
    fit_kwargs: dict = {"epochs": int(epochs), "batch_size": int(batch_size)}
    if batches_per_proposal is not None:
        fit_kwargs.update(epochs=1, steps_per_epoch=int(batches_per_proposal))
    return KerasLearner(model, (data.x_train, data.y_train), (data.x_vote, data.y_vote), (data.x_test, data.y_test),
                        need_reset_optimizer=need_reset_optimizer, minimise_criterion=metric == "loss",
                        criterion=LOSS_CRITERION if metric == "loss" else metric, model_fit_kwargs=fit_kwargs,
                        model_evaluate_kwargs={"batch_size": int(eval_batch_size)}, diff_priv_config=dp_config(dp),
                        seed=seed, model_export=model_export,
                        vote_rule=make_vote_rule(vote_rule or NEURAL_NETWORK_VOTE_RULE))


# One learner trains per round, so each proposal should do real work: 10 epochs with the restricted softmax (measured
# against 5 with plain cross-entropy: docs/keras.md). With differential privacy every epoch spends budget: 1 there.
DEFAULT_EPOCHS, DEFAULT_DP_EPOCHS = 10, 1
LOSS_CRITERION = "cross_entropy"  # the compiled metric metric="loss" votes on


def default_epochs(epochs: Optional[int], dp: DpSettings) -> int:
    """``epochs`` if given, else 10 (1 with differential privacy)."""
    if epochs is not None:
        return epochs
    return DEFAULT_DP_EPOCHS if dp is not None else DEFAULT_EPOCHS


def _seeded(seed: int, init_seed: Optional[int]) -> None:
    keras.utils.set_random_seed(int(seed if init_seed is None else init_seed) % 2**32)


def make_mlp_learner(data: LearnerData, *, seed: int, hidden: Sequence[int] = (128,), lr: float = 0.01,
                     batch_size: int = 32, epochs: Optional[int] = None, init_seed: Optional[int] = None,
                     **params: Any) -> KerasLearner:
    """A Keras MLP learner (``keras-mlp``); ``epochs`` per proposal: 10, or 1 with ``dp``. ``init_seed``
    (default ``seed``) seeds the initial weights. Other params: see :func:`build_learner`."""
    _seeded(seed, init_seed)
    return build_learner(data, build_mlp(data.n_features, data.n_classes, hidden), seed=seed, lr=lr,
                         batch_size=batch_size, epochs=default_epochs(epochs, params.get("dp")), **params)


def make_cnn_learner(data: LearnerData, *, seed: int, channels: Sequence[int] = (16, 32), hidden: int = 64,
                     lr: float = 0.005, batch_size: int = 32, epochs: Optional[int] = None,
                     init_seed: Optional[int] = None, **params: Any) -> KerasLearner:
    """A small Keras CNN learner (``keras-cnn``) on rows reshaped with ``data.image_shape`` (digits: 8x8x1);
    ``epochs`` per proposal: 10, or 1 with ``dp``."""
    hwc = image_hwc(data)
    _seeded(seed, init_seed)
    return build_learner(data, build_cnn(hwc, data.n_classes, channels, hidden), seed=seed, lr=lr,
                         batch_size=batch_size, epochs=default_epochs(epochs, params.get("dp")), **params)
