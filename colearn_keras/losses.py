"""Training losses of colearn's Keras factories, for collective learning on label-skewed (non-IID) data.

One learner trains per round, on its own data, and the others vote on the result. A learner that holds (almost)
no sample of a class still pushes that class down with plain cross-entropy (every one of its samples is a
negative for it); its proposal forgets classes its peers hold and they vote it down. The restricted softmax of
FedRS (Li and Zhan, KDD 2021) leaves those classes out of the training softmax: their output units get no
gradient and stay where the shared model had them. Scores and votes still use every class.

Keras models end in a softmax (probabilities). Where the probabilities come from a softmax activation, Keras keeps
its logits on the output tensor and the loss uses them, so the left-out units' gradient is exactly zero (an
adaptive optimizer such as Adam would turn a merely tiny gradient into a step); otherwise it renormalises the
probabilities over the kept classes, which is the same function with a gradient that is zero up to rounding.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from colearn.learner_utils import kept_classes

LossLike = Union[str, keras.losses.Loss]


@keras.saving.register_keras_serializable(package="colearn")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities against integer labels smoothed by ``label_smoothing``."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "smoothed_sparse_crossentropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        depth = tf.shape(y_pred)[-1]
        labels = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), depth, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(labels, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="colearn")
class RestrictedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy over the classes ``kept`` only (FedRS with alpha = 0), against integer labels.

    The softmax is taken over the kept classes (their logits when the model's softmax keeps them, else the
    probabilities renormalised over the kept classes), with ``label_smoothing`` spread over the kept classes.
    The other classes' output units get no gradient; samples labelled with a left-out class add nothing.
    Per-example losses from :meth:`call` (as DP-SGD needs). Only for training: score with every class.
    """

    def __init__(self, kept: Sequence[int], n_classes: int, label_smoothing: float = 0.0,
                 name: str = "restricted_sparse_crossentropy", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.kept = sorted(int(c) for c in kept)
        if not self.kept or self.kept[0] < 0 or self.kept[-1] >= self.n_classes:
            raise ValueError(f"kept must be classes in [0, {self.n_classes}), at least one, got {list(kept)!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        mask = np.zeros(self.n_classes, dtype=bool)
        mask[self.kept] = True
        self._mask = mask

    @classmethod
    def from_labels(cls, labels: Sequence[int], n_classes: int, rare_fraction: float = 0.02,
                    label_smoothing: float = 0.0) -> "RestrictedSparseCrossentropy":
        """Keep the classes that make up at least ``rare_fraction`` of the training ``labels``."""
        return cls(kept_classes(labels, n_classes, rare_fraction), n_classes, label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        logits = getattr(y_pred, "_keras_logits", None)  # set by Keras' softmax activation
        scores = logits if logits is not None else tf.math.log(tf.maximum(y_pred, keras.config.epsilon()))
        dtype = scores.dtype
        mask = tf.constant(self._mask)
        floor = tf.fill(tf.shape(scores), tf.constant(-1e9, dtype))
        kept_scores = tf.where(mask, scores, floor)  # left-out classes: no gradient reaches them
        log_probs = tf.where(mask, tf.nn.log_softmax(kept_scores, axis=-1), tf.zeros_like(scores))
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        weight = tf.cast(mask, dtype)
        target = (1.0 - self.label_smoothing) * tf.one_hot(labels, self.n_classes, dtype=dtype) * weight + \
            self.label_smoothing * weight / float(len(self.kept))
        labelled_kept = tf.gather(weight, labels)  # 0 for a sample of a left-out class
        return -tf.reduce_sum(target * log_probs, axis=-1) * labelled_kept

    def get_config(self) -> dict:
        return {**super().get_config(), "kept": list(self.kept), "n_classes": self.n_classes,
                "label_smoothing": self.label_smoothing}


def training_loss(labels: Sequence[int], n_classes: int, rare_fraction: Optional[float],
                  label_smoothing: float) -> LossLike:
    """The training loss of colearn's Keras factories: the restricted softmax, or (``rare_fraction=None``) plain
    cross-entropy (label-smoothed when ``label_smoothing`` > 0)."""
    if rare_fraction is None:
        return SmoothedSparseCrossentropy(label_smoothing) if label_smoothing else "sparse_categorical_crossentropy"
    return RestrictedSparseCrossentropy.from_labels(labels, n_classes, rare_fraction, label_smoothing)


__all__ = ["RestrictedSparseCrossentropy", "SmoothedSparseCrossentropy", "kept_classes", "training_loss"]
