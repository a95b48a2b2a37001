"""Packages kept for colearn 0.2.x users, built on colearn's own modules.

``colearn/compat/colearn_grpc`` is installed as the top-level package ``colearn_grpc`` (``pyproject.toml`` maps
it): 0.2.x's gRPC factory API on colearn's secure learner service. Importing this package also makes
``colearn_grpc`` importable from a source checkout that was not installed (``PYTHONPATH=.``), by registering
the same package under that name. Nothing here is imported by ``import colearn``.
"""
from __future__ import annotations

import importlib.util
import sys


def _expose_colearn_grpc() -> None:
    if "colearn_grpc" in sys.modules or importlib.util.find_spec("colearn_grpc") is not None:
        return  # installed (pip install [-e] .) or already imported
    from colearn.compat import colearn_grpc

    sys.modules["colearn_grpc"] = colearn_grpc


_expose_colearn_grpc()
