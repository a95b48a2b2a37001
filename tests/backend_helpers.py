"""Deterministic numpy learners and picklable factories for the backend tests (with injectable faults)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from colearn.learner_utils import ScoreCache, vote_for
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights

# A fault: (method, call number starting at 1, action) with action "raise", "exit" (os._exit) or "hang".
Fault = Tuple[str, int, str]


class NumpyRegressionLearner(MachineLearningInterface):
    """Linear regression trained by minibatch SGD; its own seeded generator picks the batches, so the
    results depend on the learner's state persisting between rounds (as it must in a worker)."""

    def __init__(self, index: int, seed: int = 0, n_features: int = 20, faults: Tuple[Fault, ...] = ()):
        data_rng = np.random.default_rng([seed, 10_000])
        true_w = data_rng.normal(size=n_features)
        rng = np.random.default_rng([seed, index])
        shift = 0.5 * index  # learners differ, so some proposals get rejected

        def make(n: int) -> tuple[np.ndarray, np.ndarray]:
            x = rng.normal(size=(n, n_features)) + shift
            return x, x @ true_w + rng.normal(scale=0.5 + index, size=n)

        (self.x_train, self.y_train), (self.x_vote, self.y_vote), (self.x_test, self.y_test) = (
            make(120), make(60), make(60))
        self.rng = np.random.default_rng([seed, index, 1])
        self.w = np.zeros(n_features, dtype=np.float32)
        self.faults = faults
        self.calls: Dict[str, int] = {}
        self.cache = ScoreCache()
        self.vote_score, _ = self._scores(self.w)

    def _fault(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        for name, call, action in self.faults:
            if name == method and call == self.calls[method]:
                if action == "raise":
                    raise RuntimeError(f"injected failure in {method} call {call}")
                if action == "exit":
                    os._exit(3)
                if action == "hang":
                    time.sleep(3600)

    def _scores(self, w: np.ndarray) -> tuple[float, float]:
        vote = float(np.mean((self.x_vote @ w - self.y_vote) ** 2))
        test = float(np.mean((self.x_test @ w - self.y_test) ** 2))
        return vote, test

    def mli_propose_weights(self) -> Weights:
        self._fault("propose")
        w = self.w.astype(np.float64)
        for _ in range(5):
            batch = self.rng.choice(len(self.y_train), size=16, replace=False)
            x, y = self.x_train[batch], self.y_train[batch]
            w -= 0.01 * (2.0 / len(y)) * x.T @ (x @ w - y)
        return Weights(weights={"w": w.astype(np.float32)})

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        self._fault("test")
        vote_score, test_score = self._scores(weights.weights["w"])
        self.cache.put(weights.weights, vote_score, test_score)
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=vote_for(vote_score, self.vote_score, minimise=True))

    def mli_accept_weights(self, weights: Weights) -> None:
        self._fault("accept")
        self.w = np.array(weights.weights["w"], dtype=np.float32)
        self.vote_score, _ = self._scores(self.w)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={"w": self.w.copy()})


@dataclass(frozen=True)
class NumpyFactory:
    """Picklable zero-argument factory for learner ``index``."""

    index: int
    seed: int = 0
    n_features: int = 20
    faults: Tuple[Fault, ...] = ()
    fail_to_start: bool = False

    def __call__(self) -> NumpyRegressionLearner:
        if self.fail_to_start:
            raise RuntimeError(f"factory {self.index} refuses to build")
        return NumpyRegressionLearner(self.index, self.seed, self.n_features, self.faults)


def factories(n: int, seed: int = 0, n_features: int = 20,
              faults: Optional[Dict[int, Tuple[Fault, ...]]] = None) -> list[NumpyFactory]:
    faults = faults or {}
    return [NumpyFactory(i, seed, n_features, faults.get(i, ())) for i in range(n)]


def comparable(results_json: str) -> dict:
    """A results.json without what legitimately differs between backends (name, versions, timings)."""
    import json

    data = json.loads(results_json)
    data.pop("backend", None)
    data.pop("versions", None)
    data.get("config", {}).pop("backend", None)
    data.get("config", {}).pop("backend_options", None)
    return data


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids: list[int], timeout: float = 5.0) -> list[int]:
    """Wait until every pid is gone; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if pid_alive(pid)]

