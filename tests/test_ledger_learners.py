"""A small deterministic numpy learner for the ledger tests (softmax regression on learner data)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from colearn.data.types import LearnerData
from colearn.learner_utils import check_named_arrays_match, vote_for
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights


class SoftmaxLearner(MachineLearningInterface):
    """Multinomial logistic regression trained by a few full-batch gradient steps per proposal."""

    def __init__(self, data: LearnerData, *, seed: int = 0, steps: int = 3, lr: float = 0.5):
        rng = np.random.default_rng(seed)
        self.data, self.steps, self.lr = data, steps, lr
        n_features = int(np.prod(data.x_train.shape[1:]))
        self.params = {"w": rng.normal(0, 0.01, (n_features, data.n_classes)), "b": np.zeros(data.n_classes)}
        self.vote_score: Optional[float] = None

    def _logits(self, params: dict, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1) @ params["w"] + params["b"]

    def _accuracy(self, params: dict, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self._logits(params, x), axis=1) == y))

    def mli_propose_weights(self) -> Weights:
        params = {k: v.copy() for k, v in self.params.items()}
        x, y = self.data.x_train.reshape(len(self.data.x_train), -1), self.data.y_train
        onehot = np.eye(self.data.n_classes)[y]
        for _ in range(self.steps):
            logits = self._logits(params, x)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            grad = (p - onehot) / len(x)
            params["w"] -= self.lr * x.T @ grad
            params["b"] -= self.lr * grad.sum(axis=0)
        return Weights(weights=params)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        params = check_named_arrays_match(weights.weights, self.params)
        vote_score = self._accuracy(params, self.data.x_vote, self.data.y_vote)
        test_score = self._accuracy(params, self.data.x_test, self.data.y_test)
        if self.vote_score is None:
            self.vote_score = self._accuracy(self.params, self.data.x_vote, self.data.y_vote)
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=vote_for(vote_score, self.vote_score))

    def mli_accept_weights(self, weights: Weights) -> None:
        params = check_named_arrays_match(weights.weights, self.params)
        self.params = {k: np.array(v, copy=True) for k, v in params.items()}
        self.vote_score = self._accuracy(self.params, self.data.x_vote, self.data.y_vote)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={k: v.copy() for k, v in self.params.items()})


def make_learners(n: int, seed: int = 0, steps: int = 3) -> list:
    """``n`` softmax learners on an IID split of digits."""
    from colearn.data.splits import split_learner_data
    from colearn.data.tasks import load_task

    datas = split_learner_data(load_task("digits"), n, seed=seed)
    return [SoftmaxLearner(d, seed=seed * 1000 + i, steps=steps) for i, d in enumerate(datas)]


def make_softmax(data: LearnerData, *, seed: int, steps: int = 3, lr: float = 0.5) -> SoftmaxLearner:
    """Registry-style factory (``factory(data, *, seed, **params)``)."""
    return SoftmaxLearner(data, seed=seed, steps=steps, lr=lr)


def register_softmax(name: str = "ledger-test-softmax") -> str:
    """Register :func:`make_softmax` under ``name`` so that RunConfig(learner=name) builds it."""
    from colearn.registry import LearnerSpec, register_learner

    register_learner(LearnerSpec(name, f"{__name__}:make_softmax", "dev", "numpy softmax regression (tests)"))
    return name
