"""Write your own learner: a complete Machine Learning Interface (MLI) in plain numpy.

    python examples/write_your_own_learner.py           # 5 learners on digits, 15 rounds
    python examples/write_your_own_learner.py --fast    # 3 rounds (what the tests run)

A learner is anything that implements four methods. The protocol calls nothing else, so this learner
can take part in an experiment run in this process, in worker processes or across machines:

    mli_propose_weights()         train on my private data, return new weights   (my model must not change)
    mli_test_weights(weights)     score them on my vote and test sets, and vote  (my model must not change)
    mli_accept_weights(weights)   adopt them                                     (reuse the scores I computed)
    mli_get_current_weights()     return the weights I hold

The model here is multinomial logistic regression trained by mini-batch gradient descent.
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from colearn.data import LearnerData, load_task, split_learner_data
from colearn.experiment import Experiment
from colearn.learner_utils import ScoreCache, check_named_arrays_match, vote_for
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn.protocol import ProtocolConfig
from colearn.results import ExperimentResults


class NumpyLogisticRegression(MachineLearningInterface):
    """Softmax regression on flattened inputs; weights are ``{"W": (features, classes), "b": (classes,)}``."""

    def __init__(self, data: LearnerData, *, seed: int = 0, learning_rate: float = 0.5, epochs: int = 5,
                 batch_size: int = 32):
        self.data = data
        self.learning_rate, self.epochs, self.batch_size = learning_rate, epochs, batch_size
        # Our own seeded random generator: same seed, same proposals (colearn runs are reproducible).
        self.rng = np.random.default_rng(seed)
        # The held model. Every learner starts from zeros; after the first accepted round they all hold
        # the same weights anyway.
        self.weights: Dict[str, np.ndarray] = {"W": np.zeros((data.n_features, data.n_classes)),
                                               "b": np.zeros(data.n_classes)}
        # Scores of weights we have tested, keyed by their content, so that accepting them later does not
        # evaluate them again (the experiment calls test, then accept, with the same weights).
        self.cache = ScoreCache()
        self.held_scores: Optional[Tuple[float, float]] = None

    # --- the model ------------------------------------------------------------------------------
    @staticmethod
    def _probabilities(weights: Dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        logits = x.reshape(len(x), -1) @ weights["W"] + weights["b"]
        logits -= logits.max(axis=1, keepdims=True)  # numerically stable softmax
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def _accuracy(self, weights: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self._probabilities(weights, x).argmax(axis=1) == y))

    def _score(self, weights: Dict[str, np.ndarray]) -> Tuple[float, float]:
        """(accuracy on my vote set, accuracy on my test set). Voting uses the first only."""
        return (self._accuracy(weights, self.data.x_vote, self.data.y_vote),
                self._accuracy(weights, self.data.x_test, self.data.y_test))

    def _current_scores(self) -> Tuple[float, float]:
        if self.held_scores is None:
            self.held_scores = self._score(self.weights)
        return self.held_scores

    # --- the MLI --------------------------------------------------------------------------------
    def mli_propose_weights(self) -> Weights:
        # 1. Train a COPY. The held model stays as it is until the vote says otherwise.
        w = {name: array.copy() for name, array in self.weights.items()}
        x = self.data.x_train.reshape(len(self.data.y_train), -1)
        onehot = np.eye(self.data.n_classes)[self.data.y_train]
        for _ in range(self.epochs):
            order = self.rng.permutation(len(x))
            for start in range(0, len(x), self.batch_size):
                rows = order[start: start + self.batch_size]
                error = self._probabilities(w, x[rows]) - onehot[rows]  # gradient of the cross-entropy
                w["W"] -= self.learning_rate * x[rows].T @ error / len(rows)
                w["b"] -= self.learning_rate * error.mean(axis=0)
        # 2. Return plain numpy arrays (they are fresh: nobody else holds them). colearn encodes them as
        #    typed arrays when they cross a process or machine boundary; never pickle.
        return Weights(weights=w)

    def _checked(self, weights: Weights) -> Dict[str, np.ndarray]:
        # Weights come from another learner: untrusted. Same names, shapes and dtypes as ours, or refuse
        # with a clear error (WeightsMismatchError) BEFORE touching any state.
        arrays = check_named_arrays_match(weights.weights, self.weights)
        if not all(np.all(np.isfinite(a)) for a in arrays.values()):
            raise ValueError("received weights contain NaN or infinite values")
        return arrays

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        arrays = self._checked(weights)
        scores = self.cache.get(arrays)
        if scores is None:
            scores = self._score(arrays)
            self.cache.put(arrays, *scores)
        vote_score, test_score = scores
        # THE vote rule of colearn: approve when the proposal is not worse than what I hold (ties approve).
        vote = vote_for(vote_score, self._current_scores()[0])
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score, vote=vote,
                               criterion="accuracy")

    def mli_accept_weights(self, weights: Weights) -> None:
        arrays = self._checked(weights)
        # Keep a COPY: the same Weights object goes to every learner in this process; sharing its arrays
        # would tie all our models together (colearn 0.2.8's sklearn learner had exactly that bug).
        self.weights = {name: array.copy() for name, array in arrays.items()}
        # Reuse the scores mli_test_weights computed; None means "score lazily when first needed".
        self.held_scores = self.cache.get(arrays)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={name: array.copy() for name, array in self.weights.items()})


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", default=bool(os.environ.get("COLEARN_FAST")),
                        help="3 rounds, 1 epoch per proposal (also: COLEARN_FAST=1)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> ExperimentResults:
    args = parse_args(argv)
    datas = split_learner_data(load_task("digits"), args.learners, seed=args.seed)
    learners = [NumpyLogisticRegression(d, seed=args.seed * 1000 + i, epochs=1 if args.fast else 5)
                for i, d in enumerate(datas)]
    rounds = 3 if args.fast else args.rounds
    results = Experiment(learners, ProtocolConfig(seed=args.seed),
                         hooks=[lambda r: print(f"round {r.round_index:2d}: proposer {r.proposer}, "
                                                f"{'accepted' if r.accepted else 'rejected'}, "
                                                f"mean test accuracy {r.mean_held_test_score:.3f}")]).run(rounds)
    print(f"numpy logistic regression: {results.n_accepted}/{rounds} accepted, "
          f"final mean test accuracy {results.final_mean_test_score:.3f}")
    return results


if __name__ == "__main__":
    main()
