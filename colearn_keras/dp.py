"""DP-SGD for Keras 3 on TensorFlow, without tensorflow-privacy.

Each step samples a batch by **Poisson sampling** (every training example is in it independently with
probability ``q = batch_size / n``), computes per-example gradients (one Jacobian of the per-example
losses, vectorised with ``pfor``), clips each to L2 norm ``max_grad_norm``, sums them, adds Gaussian noise
with standard deviation ``noise_multiplier * max_grad_norm`` and divides by the expected batch size
``batch_size``; the model's own optimizer applies the result. That is the sampled Gaussian mechanism,
accounted for exactly with dp-accounting's RDP accountant as ``steps`` compositions of
``PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))``.

Limits: layers that mix examples within a batch (BatchNormalization) are refused; the model must have one
loss on one output; the random numbers come from numpy's and TensorFlow's seeded generators, which are not
cryptographically secure (do not publish a seed you train with).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from colearn.ml_interface import DiffPrivBudget, DiffPrivConfig

PerExampleLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def check_config(config: DiffPrivConfig) -> None:
    """Refuse settings DP-SGD cannot honour, naming the field."""
    for name in ("target_epsilon", "target_delta", "max_grad_norm"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"diff_priv_config.{name} must be a positive number, got {value!r}")
    if not (math.isfinite(config.noise_multiplier) and config.noise_multiplier >= 0):
        raise ValueError(f"diff_priv_config.noise_multiplier must be >= 0, got {config.noise_multiplier!r}")
    if config.target_delta >= 1:
        raise ValueError(f"diff_priv_config.target_delta must be below 1, got {config.target_delta!r}")


def _all_layers(model: keras.Model) -> List[keras.layers.Layer]:
    layers, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return layers


def per_example_loss_fn(model: keras.Model) -> PerExampleLoss:
    """The compiled loss of ``model`` as a function returning one loss per example (shape ``[batch]``)."""
    loss = getattr(model, "loss", None)
    if loss is None:
        raise ValueError("model: compile it with a loss before training with differential privacy")
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError("model: differential privacy supports one loss on one output, "
                         f"got {type(loss).__name__} of losses")
    function: Any = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    call = function.call if isinstance(function, keras.losses.Loss) else function  # Loss.call: unreduced
    if not callable(call):
        raise ValueError(f"model: cannot use the compiled loss {loss!r} per example")

    def per_example(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        values = tf.convert_to_tensor(call(y_true, y_pred))
        if values.shape.rank and values.shape.rank > 1:
            values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
        return values

    return per_example


def check_model(model: keras.Model) -> None:
    """Refuse models DP-SGD cannot train privately here, naming the reason."""
    mixing = [layer.name for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if mixing:
        raise ValueError(f"model: BatchNormalization layers {mixing} mix examples within a batch, which breaks "
                         "per-example privacy; use LayerNormalization/GroupNormalization or no normalization")
    if not model.trainable_variables:
        raise ValueError("model: it has no trainable variables")


def per_example_gradients(model: keras.Model, loss_fn: PerExampleLoss, x: tf.Tensor, y: tf.Tensor,
                          variables: Optional[Sequence[Any]] = None) -> List[tf.Tensor]:
    """Gradients of each example's loss (plus the model's regularization losses) w.r.t. ``variables``:
    one tensor of shape ``[batch, *variable.shape]`` per variable."""
    variables = list(model.trainable_variables if variables is None else variables)
    with tf.GradientTape() as tape:
        predictions = model(x, training=True)
        losses = loss_fn(y, predictions)
        if model.losses:
            losses = losses + tf.add_n([tf.cast(term, losses.dtype) for term in model.losses])
    return tape.jacobian(losses, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO,
                         experimental_use_pfor=True)


def clip_gradients(per_example: Sequence[tf.Tensor], max_grad_norm: float) -> Tuple[List[tf.Tensor], tf.Tensor]:
    """Scale each example's gradient (across all variables) to L2 norm at most ``max_grad_norm``.

    Returns the clipped per-example gradients and the norms before clipping (shape ``[batch]``).
    """
    squares = [tf.reduce_sum(tf.reshape(tf.square(g), [-1, g.shape[1:].num_elements()]), axis=1)
               for g in per_example]
    norms = tf.sqrt(tf.add_n(squares))
    factors = max_grad_norm / tf.maximum(norms, max_grad_norm)  # 1 below the bound, bound/norm above it
    clipped = [g * tf.reshape(tf.cast(factors, g.dtype), [-1] + [1] * (g.shape.rank - 1)) for g in per_example]
    return clipped, norms


def privatize(per_example: Sequence[tf.Tensor], max_grad_norm: float, noise_multiplier: float,
              denominator: float, seed: tf.Tensor) -> List[tf.Tensor]:
    """DP-SGD's gradient: (sum of clipped per-example gradients + N(0, (noise_multiplier*max_grad_norm)^2))
    / ``denominator``. ``seed`` is a stateless-random seed of shape ``[2]``."""
    clipped, _ = clip_gradients(per_example, max_grad_norm)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(clipped))
    result = []
    for index, g in enumerate(clipped):
        total = tf.reduce_sum(g, axis=0)
        if noise_multiplier > 0:
            total += tf.random.stateless_normal(tf.shape(total), seed=seeds[index],
                                                stddev=noise_multiplier * max_grad_norm, dtype=total.dtype)
        result.append(total / denominator)
    return result


def _quietly(function: Callable[[], Any]) -> Any:
    """Run ``function`` with absl warnings off (dp-accounting logs every fractional RDP order it skips)."""
    from absl import logging as absl_logging  # absl comes with dp-accounting (and TensorFlow)

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return function()
    finally:
        absl_logging.set_verbosity(verbosity)


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:
        raise ImportError(f"differential privacy needs dp-accounting: pip install 'colearn[keras]' ({exc})") from None
    return dp_accounting


@lru_cache(maxsize=64)
def _accountant_after(noise_multiplier: float, sample_rate: float, steps: int) -> Any:
    dp_accounting = _dp_accounting()
    event = dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    accountant = dp_accounting.rdp.RdpAccountant()  # its default orders, as a direct call would use
    _quietly(lambda: accountant.compose(event, int(steps)))
    return accountant


@lru_cache(maxsize=1024)
def rdp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``steps`` Poisson-sampled Gaussian steps: dp-accounting's ``RdpAccountant``
    composing ``PoissonSampledDpEvent(sample_rate, GaussianDpEvent(noise_multiplier))`` ``steps`` times."""
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    one_step = _accountant_after(float(noise_multiplier), float(sample_rate), 1)
    orders, rdp = getattr(one_step, "_orders", None), getattr(one_step, "_rdp", None)
    if orders is None or rdp is None:  # another dp-accounting layout: compose the steps from scratch
        return float(_accountant_after(float(noise_multiplier), float(sample_rate), int(steps)).get_epsilon(delta))
    # composing an event n times adds n times its RDP (what compose(event, n) computes), so reuse one step's
    compute_epsilon = _dp_accounting().rdp.rdp_privacy_accountant.compute_epsilon
    return float(compute_epsilon(orders, int(steps) * np.asarray(rdp), delta)[0])


class PrivacyLedger:
    """What one learner has spent: DP-SGD steps at a fixed sample rate and noise, read as (epsilon, delta)."""

    def __init__(self, config: DiffPrivConfig, sample_rate: float):
        self.config, self.sample_rate, self.steps = config, float(sample_rate), 0

    def epsilon(self, steps: Optional[int] = None) -> float:
        steps = self.steps if steps is None else steps
        return rdp_epsilon(self.config.noise_multiplier, self.sample_rate, int(steps), self.config.target_delta)

    def would_exceed(self, extra_steps: int) -> bool:
        """True when ``extra_steps`` more steps would take epsilon past the target."""
        return self.epsilon(self.steps + extra_steps) > self.config.target_epsilon

    def budget(self) -> DiffPrivBudget:
        return DiffPrivBudget(target_epsilon=self.config.target_epsilon, target_delta=self.config.target_delta,
                              consumed_epsilon=self.epsilon(),
                              consumed_delta=self.config.target_delta if self.steps else 0.0)


class DPSGDTrainer:
    """Trains a compiled Keras model with DP-SGD on ``(x, y)`` arrays, with its own optimizer.

    ``batch_size`` is the expected batch size of Poisson sampling; an epoch is ``ceil(n / batch_size)`` steps.
    """

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, config: DiffPrivConfig,
                 batch_size: int, *, seed: Optional[int] = None):
        check_config(config)
        check_model(model)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.x, self.y, self.config = model, np.asarray(x), np.asarray(y), config
        self.n = len(self.x)
        self.batch_size = int(batch_size)
        self.sample_rate = min(1.0, self.batch_size / self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.ledger = PrivacyLedger(config, self.sample_rate)
        self.loss_fn = per_example_loss_fn(model)
        self.rng = np.random.default_rng(seed)  # seed None: fresh OS entropy
        self._optimizer: Any = None
        self._step: Any = None
        self._empty_step: Any = None

    def _make_step(self) -> Any:
        model, optimizer = self.model, self.model.optimizer
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        variables = list(model.trainable_variables)
        clip, noise, denominator = (float(self.config.max_grad_norm), float(self.config.noise_multiplier),
                                    float(self.batch_size))
        x_spec = tf.TensorSpec((None,) + self.x.shape[1:], tf.as_dtype(self.x.dtype))
        y_spec = tf.TensorSpec((None,) + self.y.shape[1:], tf.as_dtype(self.y.dtype))

        @tf.function(input_signature=[x_spec, y_spec, tf.TensorSpec([2], tf.int64)])
        def step(x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
            grads = privatize(per_example_gradients(model, self.loss_fn, x, y, variables), clip, noise,
                              denominator, seed)
            optimizer.apply_gradients(zip(grads, variables))
            return tf.shape(x)[0]

        @tf.function(input_signature=[tf.TensorSpec([2], tf.int64)])
        def empty_step(seed: tf.Tensor) -> tf.Tensor:  # an empty Poisson sample: the update is pure noise
            nothing = [tf.zeros((0,) + tuple(v.shape), v.dtype) for v in variables]
            optimizer.apply_gradients(zip(privatize(nothing, clip, noise, denominator, seed), variables))
            return tf.constant(0)

        self._optimizer, self._empty_step = optimizer, empty_step
        return step

    def run(self, steps: int) -> None:
        """Take ``steps`` DP-SGD steps (each spends privacy, whatever happens to the result)."""
        if self._step is None or self._optimizer is not self.model.optimizer:
            self._step = self._make_step()
        for _ in range(int(steps)):
            members = np.flatnonzero(self.rng.random(self.n) < self.sample_rate)
            seed = tf.constant(self.rng.integers(0, 2**62, size=2, dtype=np.int64))
            if len(members):
                self._step(self.x[members], self.y[members], seed)
            else:  # an empty Poisson sample still takes a step (and spends privacy)
                self._empty_step(seed)
            self.ledger.steps += 1
