"""Exporting Keras models: native ``.keras`` bytes (always) and ONNX (when tf2onnx can convert the model)."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import keras
import tensorflow as tf

from colearn.ml_interface import OnnxUnavailableError


def keras_model_to_bytes(model: keras.Model) -> bytes:
    """The model (architecture, weights, compile settings) in Keras 3's native ``.keras`` zip format."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def keras_model_from_bytes(blob: bytes, *, compile: bool = True) -> keras.Model:
    """Load ``.keras`` bytes with Keras' ``safe_mode`` on (it refuses to deserialize arbitrary code)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(blob)
        return keras.models.load_model(path, compile=compile, safe_mode=True)


def keras_model_to_onnx(model: keras.Model) -> Any:
    """Convert a Keras model to an ONNX ``ModelProto`` with tf2onnx.

    Raises :class:`~colearn.ml_interface.OnnxUnavailableError` saying why when tf2onnx is not installed or
    cannot convert this model (tf2onnx lags behind Keras 3 and numpy 2).
    """
    try:
        import tf2onnx  # type: ignore[import-not-found]
    except ImportError as exc:
        raise OnnxUnavailableError(
            "converting a Keras model to ONNX needs tf2onnx, which is not installed (pip install tf2onnx; "
            f"it may not support TensorFlow {tf.__version__} yet); export the native .keras format instead"
        ) from exc
    try:
        signature = [tf.TensorSpec(tensor.shape, tensor.dtype, name=f"input_{index}")
                     for index, tensor in enumerate(model.inputs)]
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature)
    except Exception as exc:  # noqa: BLE001 - any converter failure means "not available for this model"
        raise OnnxUnavailableError(f"tf2onnx could not convert this Keras {keras.__version__} model: "
                                   f"{type(exc).__name__}: {exc}") from exc
    return proto
