"""A collective learner for any scikit-learn classifier with ``partial_fit`` (SGDClassifier, MLPClassifier, ...).

Isolation is the point of this module: proposing trains a *copy* of the held model, testing scores a
*copy* with the received weights, and weights are copied on the way out and on the way in, so no two
learners (and no learner and its caller) ever share an array. colearn 0.2.8's learner handed out the
model's own ``coef_``: a proposal silently changed every learner's model. Here that cannot happen.

>>> learner = make_sgd_learner(data, seed=0)               # doctest: +SKIP
>>> proposal = learner.mli_propose_weights()               # doctest: +SKIP
"""
from __future__ import annotations

import copy
import functools
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar

import numpy as np

from colearn.data.types import LearnerData
from colearn.learner_utils import ScoreCache, vote_for
from colearn.ml_interface import (ColearnModel, MachineLearningInterface, ModelFormat, Prediction,
                                  PredictionRequest, ProposedWeights, Weights)
from colearn_other.sklearn_state import check_weights, state_for

MAX_POLY2_FEATURES = 5000
F = TypeVar("F", bound=Callable[..., Any])


def limit_blas_threads(method: F) -> F:
    """Run ``method`` with at most ``self.blas_threads`` BLAS threads (``None``: no limit).

    The models here are small: multi-threaded BLAS only adds contention (10-30x slower matrix products
    on a busy 2-core machine, and when several learners run side by side in worker processes).
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.blas_threads is None:
            return method(self, *args, **kwargs)
        with _thread_controller().limit(limits=self.blas_threads, user_api="blas"):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _thread_controller() -> Any:
    """One controller per process: scanning the loaded libraries on every call costs milliseconds."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class SKLearnLearner(MachineLearningInterface):
    """Collective learning with a scikit-learn classifier trained by ``partial_fit``.

    ``model``: an estimator with ``partial_fit`` (it is copied; the caller's object is never touched).
    ``epochs_per_proposal``: passes over the learner's training set per proposal.
    ``batch_size``: rows per ``partial_fit`` call (``None``: the whole shuffled epoch in one call; MLPs
    batch internally with their own ``batch_size``).
    ``classes``: all class labels (default ``range(data.n_classes)``), needed because a learner's own
    share may lack some classes. ``features``: an optional *fitted, data-independent* transformer
    (``.transform(x)``), the same for every learner, applied to all of this learner's data once.
    ``weight_attributes``: for estimators other than SGD-family linear models and ``MLPClassifier``,
    the fitted attributes that make up the weights. ``blas_threads``: BLAS threads while the learner
    works (default 1, fastest for small models; ``None`` leaves the process setting alone).
    Scores are accuracies on the vote and test sets.
    """

    criterion = "accuracy"

    def __init__(self, model: Any, data: LearnerData, *, epochs_per_proposal: int = 1,
                 batch_size: Optional[int] = None, classes: Optional[Sequence[Any]] = None, seed: int = 0,
                 features: Any = None, weight_attributes: Optional[Sequence[str]] = None,
                 reset_initial: bool = True, blas_threads: Optional[int] = 1):
        if not hasattr(model, "partial_fit"):
            raise TypeError(f"model must have partial_fit; {type(model).__name__} has not "
                            "(use colearn_other.random_forest for tree ensembles)")
        if isinstance(epochs_per_proposal, bool) or not isinstance(epochs_per_proposal, int) \
                or epochs_per_proposal < 1:
            raise ValueError(f"epochs_per_proposal must be an integer >= 1, got {epochs_per_proposal!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
        if len(data.y_train) == 0 or len(data.y_vote) == 0:
            raise ValueError("the learner needs training and vote data; got "
                             f"{len(data.y_train)} training and {len(data.y_vote)} vote samples")
        self.epochs_per_proposal = epochs_per_proposal
        self.blas_threads = blas_threads
        self.batch_size = batch_size
        self.seed = int(seed)
        self.classes = np.asarray(classes if classes is not None else np.arange(data.n_classes))
        self.features = features
        self.data = data
        self._x_train, self._x_vote, self._x_test = (self._transform(x) for x in
                                                     (data.x_train, data.x_vote, data.x_test))
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7]))
        self.model = copy.deepcopy(model)
        if "random_state" in self.model.get_params() and self.model.get_params()["random_state"] is None:
            self.model.set_params(random_state=self.seed)
        self.state = state_for(self.model, weight_attributes)
        if not hasattr(self.model, "classes_"):  # allocate the weights with one sample, then reset them
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. MLP: "batch_size ... will be clipped"
                self.model.partial_fit(self._x_train[:1], data.y_train[:1], classes=self.classes)
            if reset_initial:
                self.state.reset(self.model)
        self._cache = ScoreCache()
        self._held_key = self._cache.key(self.state.extract(self.model))
        self._held_scores: Optional[Tuple[float, float]] = None

    # --- the MLI -------------------------------------------------------------------------------
    @limit_blas_threads
    def mli_propose_weights(self) -> Weights:
        """Train a copy of the held model for ``epochs_per_proposal`` epochs; the held model is untouched."""
        candidate = copy.deepcopy(self.model)
        x, y = self._x_train, self.data.y_train
        for _ in range(self.epochs_per_proposal):
            order = self._rng.permutation(len(y))
            step = self.batch_size or len(order)
            for start in range(0, len(order), step):
                rows = order[start: start + step]
                candidate.partial_fit(x[rows], y[rows])
        return Weights(weights=self.state.extract(candidate))

    @limit_blas_threads
    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        """Score ``weights`` on the vote and test sets and vote; the held model is untouched."""
        tree = self._checked(weights)
        key = self._cache.key(tree)
        scores = self._cache.get(tree, key)
        if scores is None:
            scores = self._score(self._with_weights(tree))
            self._cache.put(tree, *scores, key=key)
        vote_score, test_score = scores
        held_vote, _ = self._current_scores()
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=vote_for(vote_score, held_vote), criterion=self.criterion)

    @limit_blas_threads
    def mli_accept_weights(self, weights: Weights) -> None:
        """Adopt ``weights`` (as a copy). Scores computed by :meth:`mli_test_weights` are reused, not redone."""
        tree = self._checked(weights)
        self.model = self._with_weights(tree)
        self._held_key = self._cache.key(tree)
        self._held_scores = self._cache.get(tree, self._held_key)  # None: scored lazily when first needed

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.state.extract(self.model))

    def mli_get_current_model(self) -> ColearnModel:
        """The held model (with its feature map, if any) as skops bytes: loadable without executing code."""
        import skops.io as sio

        from sklearn.pipeline import make_pipeline

        model = self.model if self.features is None else make_pipeline(self.features, self.model)
        return ColearnModel(model_format=ModelFormat.SKOPS, model=sio.dumps(model))

    @limit_blas_threads
    def mli_make_prediction(self, request: PredictionRequest) -> Prediction:
        x = np.asarray(request.input_data, dtype=np.float32)
        x = x.reshape(1, -1) if x.ndim == 1 else x.reshape(len(x), -1)
        return Prediction(name=request.name, prediction_data=self.model.predict(self._transform(x)).tolist())

    # --- helpers -------------------------------------------------------------------------------
    @property
    def current_scores(self) -> Tuple[float, float]:
        """(vote accuracy, test accuracy) of the held model."""
        return self._current_scores()

    def _current_scores(self) -> Tuple[float, float]:
        if self._held_scores is None:
            self._held_scores = self._cache.get(None, self._held_key)
        if self._held_scores is None:
            self._held_scores = self._score(self.model)
            self._cache.put(None, *self._held_scores, key=self._held_key)
        return self._held_scores

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).reshape(len(x), -1)
        return x if self.features is None else np.asarray(self.features.transform(x))

    def _checked(self, weights: Any) -> Any:
        received = weights.weights if isinstance(weights, Weights) else weights
        return check_weights(received, self.state.extract(self.model))

    def _with_weights(self, tree: Any) -> Any:
        model = copy.deepcopy(self.model)
        self.state.assign(model, tree)
        return model

    def _score(self, model: Any) -> Tuple[float, float]:
        """Accuracy on the vote set and on the test set (one evaluation)."""
        return self._accuracy(model, self._x_vote, self.data.y_vote), self._accuracy(model, self._x_test,
                                                                                    self.data.y_test)

    @staticmethod
    def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(model.predict(x) == y)) if len(y) else float("nan")


def polynomial_features(n_features: int, degree: int = 2) -> Any:
    """A fixed, data-independent degree-``degree`` polynomial feature map for ``n_features`` inputs."""
    from sklearn.preprocessing import PolynomialFeatures

    return PolynomialFeatures(degree=degree).fit(np.zeros((1, n_features)))


def _features_for(features: Any, n_features: int) -> Any:
    if features == "auto":
        expanded = (n_features + 1) * (n_features + 2) // 2
        return polynomial_features(n_features) if expanded <= MAX_POLY2_FEATURES else None
    if features == "poly2":
        return polynomial_features(n_features)
    if features in (None, "none"):
        return None
    if hasattr(features, "transform"):
        return features
    raise ValueError(f"features must be 'auto', 'poly2', 'none' or a fitted transformer, got {features!r}")


def make_sgd_learner(data: LearnerData, *, seed: int, epochs_per_proposal: int = 3,
                     batch_size: Optional[int] = None, features: Any = "auto", loss: str = "log_loss",
                     alpha: float = 1e-4, learning_rate: str = "constant", eta0: float = 0.1,
                     average: Any = True, **params: Any) -> SKLearnLearner:
    """Logistic regression trained by ``SGDClassifier.partial_fit`` (the default colearn learner).

    Defaults (tuned on digits, 5 learners, 20 rounds; see the learner docs): log loss, L2 ``alpha=1e-4``,
    constant step ``eta0=0.1``, averaged SGD (the averaged weights forget earlier proposers' data less,
    which matters for non-IID splits), 3 epochs per proposal. ``features="auto"`` adds a fixed degree-2
    polynomial feature map when it stays at most ``MAX_POLY2_FEATURES`` wide (digits: 64 -> 2145
    features), ``"none"`` uses the raw features: on digits the map is what lifts the collective model
    past the ~0.95 that a linear model of the raw pixels reaches. Other keyword arguments go to
    ``SGDClassifier``.
    """
    from sklearn.linear_model import SGDClassifier

    model = SGDClassifier(loss=loss, alpha=alpha, learning_rate=learning_rate, eta0=eta0, average=average,
                          random_state=seed, **params)
    return SKLearnLearner(model, data, epochs_per_proposal=epochs_per_proposal, batch_size=batch_size,
                          seed=seed, features=_features_for(features, data.n_features))


def make_mlp_learner(data: LearnerData, *, seed: int, epochs_per_proposal: int = 10,
                     hidden_layer_sizes: Sequence[int] = (64,), batch_size: int = 32,
                     learning_rate_init: float = 1e-3, alpha: float = 1e-4, **params: Any) -> SKLearnLearner:
    """A multi-layer perceptron trained by ``MLPClassifier.partial_fit`` (Adam, minibatches of ``batch_size``).

    Other keyword arguments go to ``MLPClassifier``. The optimizer state travels with the weights.
    """
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=tuple(hidden_layer_sizes), batch_size=batch_size,
                          learning_rate_init=learning_rate_init, alpha=alpha, random_state=seed, **params)
    return SKLearnLearner(model, data, epochs_per_proposal=epochs_per_proposal, seed=seed)


__all__ = ["SKLearnLearner", "make_sgd_learner", "make_mlp_learner", "polynomial_features"]
