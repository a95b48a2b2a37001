"""The embedded default: learners are objects in this process, called one after another.

Each learner gets its own read-only view of the weights it tests or adopts (:func:`colearn.proposals.private_view`),
so a learner that mutates what it was handed changes nothing for the others.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, TypeVar

from colearn.backends.base import Backend, Failure, Outcome
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ProposedWeights, Weights
from colearn.proposals import private_view

R = TypeVar("R")


class LocalBackend(Backend):
    """Calls learners directly in this process; an exception becomes a :class:`Failure` for that learner."""

    name = "local"

    def __init__(self, learners: Sequence[MachineLearningInterface]):
        self.learners = list(learners)

    @property
    def n_learners(self) -> int:
        return len(self.learners)

    def _call(self, learner: int, action: Callable[[MachineLearningInterface], R]) -> Outcome[R]:
        try:
            return action(self.learners[learner])
        except Exception as exc:  # a learner's fault is data for the protocol, not a crash
            return Failure.from_exception(learner, exc)

    def propose(self, learner: int) -> Outcome[Weights]:
        return self._call(learner, lambda mli: mli.mli_propose_weights())

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        return {i: self._call(i, lambda mli: mli.mli_test_weights(private_view(weights))) for i in learners}

    def accept(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[None]]:
        return {i: self._call(i, lambda mli: mli.mli_accept_weights(private_view(weights))) for i in learners}

    def current_weights(self, learner: int) -> Outcome[Weights]:
        return self._call(learner, lambda mli: mli.mli_get_current_weights())

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        return self._call(learner, lambda mli: mli.mli_get_current_model())
