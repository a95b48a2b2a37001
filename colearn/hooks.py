"""Callbacks that follow an experiment: a CLI progress view, a notebook plot, a logger.

Subclass :class:`Callback` and override what you need, or pass a plain function of a
:class:`~colearn.results.RoundRecord`, which is called at the end of each round.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Union

if TYPE_CHECKING:
    from colearn.results import ExperimentResults, RoundRecord


class Callback:
    """Hooks called by :class:`~colearn.experiment.Experiment`; every method is optional."""

    def on_experiment_start(self, experiment: Any) -> None:
        """Before the initial evaluation."""

    def on_round_start(self, round_index: int, proposer: int) -> None:
        """Once the proposer is chosen."""

    def on_weights_accepted(self, round_index: int, weights: Any) -> None:
        """After the learners adopted ``weights`` (a :class:`~colearn.ml_interface.Weights`): read, don't change."""

    def on_round_end(self, record: "RoundRecord") -> None:
        """After the round is decided and recorded."""

    def on_experiment_end(self, results: "ExperimentResults") -> None:
        """After the last round."""


class _FunctionCallback(Callback):
    def __init__(self, function: Callable[["RoundRecord"], Any]):
        self.function = function

    def on_round_end(self, record: "RoundRecord") -> None:
        self.function(record)


class CallbackList(Callback):
    """Calls each callback in order."""

    def __init__(self, callbacks: Iterable[Union[Callback, Callable[["RoundRecord"], Any]]] = ()):
        self.callbacks: List[Callback] = [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]

    def on_experiment_start(self, experiment: Any) -> None:
        for callback in self.callbacks:
            callback.on_experiment_start(experiment)

    def on_round_start(self, round_index: int, proposer: int) -> None:
        for callback in self.callbacks:
            callback.on_round_start(round_index, proposer)

    def on_weights_accepted(self, round_index: int, weights: Any) -> None:
        for callback in self.callbacks:
            callback.on_weights_accepted(round_index, weights)

    def on_round_end(self, record: "RoundRecord") -> None:
        for callback in self.callbacks:
            callback.on_round_end(record)

    def on_experiment_end(self, results: "ExperimentResults") -> None:
        for callback in self.callbacks:
            callback.on_experiment_end(results)
