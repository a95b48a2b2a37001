"""Backends: where learners run. The protocol reaches every learner through :class:`Backend`."""
from colearn.backends.base import Backend, Failure, Outcome
from colearn.backends.local import LocalBackend

__all__ = ["Backend", "Failure", "Outcome", "LocalBackend"]
