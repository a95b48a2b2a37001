"""colearn's Keras 3 learner (TensorFlow backend), with optional DP-SGD.

Install with ``pip install 'colearn[keras]'``. Importing any ``colearn_keras`` module without TensorFlow
raises an :class:`ImportError` that says what to install, instead of a traceback from deep inside.
"""
from __future__ import annotations

INSTALL_HINT = "colearn_keras needs TensorFlow >= 2.16 (Keras 3): pip install 'colearn[keras]'"


def _require_tensorflow() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; the user's choice wins
    try:
        import tensorflow  # noqa: F401  (the one place colearn imports TensorFlow)
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None


_require_tensorflow()

__all__ = ["INSTALL_HINT"]
