"""colearn's Keras 3 learner (TensorFlow backend), with optional DP-SGD.

Install with ``pip install 'colearn[keras]'``. Importing any ``colearn_keras`` module without TensorFlow
raises an :class:`ImportError` that says what to install, instead of a traceback from deep inside.

TensorFlow's C++ start-up lines (oneDNN, "could not find cuda drivers", a cuInit error on machines without a
GPU) ignore ``TF_CPP_MIN_LOG_LEVEL`` since TensorFlow logs through absl, so they are silenced at the file
descriptor while TensorFlow loads and looks for GPUs; set ``TF_CPP_MIN_LOG_LEVEL=0`` to see them.
``COLEARN_QUIET_FRAMEWORKS=1`` (set by the ``colearn`` command) also quiets TensorFlow's and absl's Python
warnings, such as tf.function retracing notes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

INSTALL_HINT = "colearn_keras needs TensorFlow >= 2.16 (Keras 3): pip install 'colearn[keras]'"


@contextlib.contextmanager
def _silenced_stderr(silence: bool) -> Iterator[None]:
    """Send file descriptor 2 (where C++ libraries log) to /dev/null for the duration, when ``silence``."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _require_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; the user's choice wins
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() not in ("", "0", "1")
    try:
        with _silenced_stderr(quiet):
            import tensorflow  # noqa: F401  (the one place colearn imports TensorFlow)

            tensorflow.config.list_physical_devices("GPU")  # the cuInit attempt, while its error line is silenced
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    if os.environ.get("COLEARN_QUIET_FRAMEWORKS") == "1":
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)


_require_tensorflow()

__all__ = ["INSTALL_HINT"]
