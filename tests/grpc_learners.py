"""A small deterministic numpy learner for the gRPC tests (softmax regression on an embedded task).

Importable as an entry point (``tests.grpc_learners:make_learner``) by learner servers that the tests
start as separate processes.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

import numpy as np

from colearn.data.types import LearnerData
from colearn.learner_utils import ScoreCache, check_named_arrays_match, vote_for
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights


class SoftmaxLearner(MachineLearningInterface):
    """Full-batch gradient descent on softmax regression; votes with the accuracy on its vote set."""

    def __init__(self, data: LearnerData, *, seed: int, lr: float = 0.5, steps: int = 5, extra_params: int = 0,
                 test_delay: float = 0.0):
        self.test_delay = test_delay  # seconds each test of a proposal sleeps (to be caught mid-call)
        rng = np.random.default_rng(seed)
        n_features = data.x_train.shape[1]
        self.data, self.lr, self.steps = data, lr, steps
        self.weights: Dict[str, np.ndarray] = {
            "W": rng.normal(0.0, 0.01, size=(n_features, data.n_classes)),
            "b": np.zeros(data.n_classes)}
        if extra_params:  # padding to make big models for transfer tests
            self.weights["pad"] = np.zeros(extra_params, dtype=np.float32)
        self.cache = ScoreCache()
        self.vote_score = self._accuracy(self.weights, data.x_vote, data.y_vote)

    @staticmethod
    def _accuracy(weights: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(x @ weights["W"] + weights["b"], axis=1) == y))

    def mli_propose_weights(self) -> Weights:
        W, b = self.weights["W"].copy(), self.weights["b"].copy()
        x, y = self.data.x_train, self.data.y_train
        onehot = np.eye(self.data.n_classes)[y]
        for _ in range(self.steps):
            logits = x @ W + b
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            grad = (p - onehot) / len(x)
            W -= self.lr * (x.T @ grad)
            b -= self.lr * grad.sum(axis=0)
        new = {**{k: v.copy() for k, v in self.weights.items()}, "W": W, "b": b}
        return Weights(weights=new)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        checked = check_named_arrays_match(weights.weights, self.weights)
        if self.test_delay:
            time.sleep(self.test_delay)
        vote_score = self._accuracy(checked, self.data.x_vote, self.data.y_vote)
        test_score = self._accuracy(checked, self.data.x_test, self.data.y_test)
        self.cache.put(checked, vote_score, test_score)
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=vote_for(vote_score, self.vote_score), criterion="accuracy",
                               evaluation_results={"accuracy": np.float32(test_score)})

    def mli_accept_weights(self, weights: Weights) -> None:
        checked = check_named_arrays_match(weights.weights, self.weights)
        cached = self.cache.get(checked)
        self.weights = {k: np.array(v) for k, v in checked.items()}
        self.vote_score = cached[0] if cached else self._accuracy(self.weights, self.data.x_vote, self.data.y_vote)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={k: v.copy() for k, v in self.weights.items()})


def learner_datas(n_learners: int, seed: int) -> list[LearnerData]:
    from colearn.data.splits import split_learner_data
    from colearn.data.tasks import load_task

    return split_learner_data(load_task("digits"), n_learners, seed=seed)


def make_learner(index: int = 0, n_learners: int = 5, seed: int = 0, **params: Any) -> SoftmaxLearner:
    """Learner ``index`` of ``n_learners`` on digits (the entry point servers build)."""
    from colearn.runner import learner_seed

    data = learner_datas(n_learners, seed)[index]
    return SoftmaxLearner(data, seed=learner_seed(seed, index), **params)


def make_factory_learner(data: LearnerData, *, seed: int, **params: Any) -> SoftmaxLearner:
    """The same learner as a registry factory (``factory(data, *, seed, **params)``)."""
    return SoftmaxLearner(data, seed=seed, **params)


def unused(_: Optional[int] = None) -> None:  # pragma: no cover
    """Not an MLI factory (for the entry-point refusal test)."""
