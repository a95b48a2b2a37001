"""Small deterministic learners for core tests (no framework needed)."""
from __future__ import annotations

from typing import Optional

from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights


class PlusOneLearner(MachineLearningInterface):
    """Weights are an integer; proposing adds one; a learner approves when the proposal is at most ``limit``."""

    def __init__(self, limit: int = 10**9, start: int = 0):
        self.value, self.limit = start, limit
        self.test_calls = 0
        self.accept_calls = 0

    def mli_propose_weights(self) -> Weights:
        return Weights(weights=self.value + 1)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        self.test_calls += 1
        return ProposedWeights(weights=weights, vote_score=float(weights.weights), test_score=float(weights.weights),
                               vote=weights.weights <= self.limit)

    def mli_accept_weights(self, weights: Weights) -> None:
        self.accept_calls += 1
        self.value = weights.weights

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.value)


class FixedVoter(PlusOneLearner):
    """Always answers with the given vote (True, False or None to abstain)."""

    def __init__(self, vote: Optional[bool]):
        super().__init__()
        self.fixed_vote = vote

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        verdict = super().mli_test_weights(weights)
        return verdict.model_copy(update={"vote": self.fixed_vote})


class RaisingLearner(PlusOneLearner):
    """Raises in the named methods."""

    def __init__(self, fail_in: tuple[str, ...]):
        super().__init__()
        self.fail_in = fail_in

    def mli_propose_weights(self) -> Weights:
        if "propose" in self.fail_in:
            raise RuntimeError("proposer exploded")
        return super().mli_propose_weights()

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        if "test" in self.fail_in and weights.weights != self.value:
            raise RuntimeError("voter exploded")
        return super().mli_test_weights(weights)


class GarbageVoter(PlusOneLearner):
    """Returns something that is not a ProposedWeights."""

    def mli_test_weights(self, weights: Weights):  # type: ignore[override]
        if weights.weights == self.value:
            return super().mli_test_weights(weights)
        return {"vote": True}
