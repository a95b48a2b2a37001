"""The one seam between the protocol and the learners: a :class:`Backend`.

The driver asks a backend to have learner ``i`` propose, to have a set of learners test some weights,
to have learners accept weights, and for current weights. A backend returns each learner's answer or
a :class:`Failure` for it: failures are data, never exceptions, so one broken learner cannot stop an
experiment. Where learners live (this process, worker processes, other machines, a ledger) is the
backend's business alone.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Generic, Literal, Mapping, Sequence, Set, TypeVar, Union

from colearn.ml_interface import ColearnModel, ProposalRefused, ProposedWeights, Weights

T = TypeVar("T")
FailureKind = Literal["error", "timeout", "crashed", "invalid", "refused"]
"""``refused``: the learner could not use what it was sent because of what it was sent (a voter with this
failure rejects the proposal); the others are the learner's own failures (a voter with one abstains)."""


@dataclass(frozen=True)
class Failure:
    """A learner did not answer usefully: it raised, timed out, died, or sent something invalid."""

    learner: int
    error: str
    kind: FailureKind = "error"

    @classmethod
    def from_exception(cls, learner: int, exc: BaseException, kind: FailureKind = "error") -> "Failure":
        from colearn.redact import redact  # a URL with an API key in it must not reach the results

        if isinstance(exc, ProposalRefused):
            kind = "refused"
        return cls(learner, redact(f"{type(exc).__name__}: {exc}"), kind)


Outcome = Union[T, Failure]


class Backend(abc.ABC, Generic[T]):
    """Reaches the learners. Implementations must never raise for a learner's fault: return a Failure."""

    name: str = "abstract"

    @property
    @abc.abstractmethod
    def n_learners(self) -> int:
        """How many learners this backend reaches (indices 0..n-1)."""

    @abc.abstractmethod
    def propose(self, learner: int) -> Outcome[Weights]:
        """Have ``learner`` train and return its proposal."""

    @abc.abstractmethod
    def test(self, weights: Weights, learners: Sequence[int]) -> Mapping[int, Outcome[ProposedWeights]]:
        """Have each of ``learners`` score ``weights`` and vote; a backend may run them concurrently."""

    @abc.abstractmethod
    def accept(self, weights: Weights, learners: Sequence[int]) -> Mapping[int, Outcome[None]]:
        """Have each of ``learners`` adopt ``weights``."""

    @abc.abstractmethod
    def current_weights(self, learner: int) -> Outcome[Weights]:
        """The weights ``learner`` holds now."""

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        """The exported model of ``learner``; backends override this where they can reach it."""
        return Failure(learner, f"{type(self).__name__} cannot export models", "error")

    def unknown_held(self) -> Set[int]:
        """Learners whose held model the backend knows to be unknown now (e.g. a learner server that restarted
        with other weights): the driver records their held scores as unknown. By default: none."""
        return set()

    def close(self) -> None:
        """Release whatever the backend holds (processes, connections). Safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
