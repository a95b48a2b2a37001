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
import dataclasses
import functools
from collections import OrderedDict
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar

import numpy as np

from colearn.data.types import LearnerData
from colearn.learner_utils import ScoreCache
from colearn.ml_interface import (ColearnModel, MachineLearningInterface, ModelFormat, Prediction,
                                  PredictionRequest, ProposedWeights, Weights)
from colearn.vote_rules import Evaluation, Voter, VoteRuleLike, parameter_steps
from colearn_other.sklearn_state import check_weights, state_for

MAX_POLY2_FEATURES = 5000
KNOWN_EVALUATIONS = 4  # proposals whose scores a learner remembers (tested, then accepted: not scored twice)
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
    ``vote_rule``: how this learner votes (a :mod:`colearn.vote_rules` name or rule; default ``"robust"``).
    Scores are accuracies on the vote and test sets.
    """

    criterion = "accuracy"

    def __init__(self, model: Any, data: LearnerData, *, epochs_per_proposal: int = 1,
                 batch_size: Optional[int] = None, classes: Optional[Sequence[Any]] = None, seed: int = 0,
                 features: Any = None, weight_attributes: Optional[Sequence[str]] = None,
                 reset_initial: bool = True, blas_threads: Optional[int] = 1, vote_rule: VoteRuleLike = None):
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
        self.voter = Voter(vote_rule)
        self._steps_per_proposal = self.epochs_per_proposal * len(data.y_train)  # partial_fit's t_ per proposal
        self._known: "OrderedDict[str, Tuple[Evaluation, float]]" = OrderedDict()  # recent evaluations by digest
        self._held_key = ScoreCache.key(self.state.extract(self.model))
        self._held: Optional[Tuple[Evaluation, float]] = None

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
        tree = self._checked(weights, voting=True)
        evaluation, test_score = self._scored(tree)
        evaluation = dataclasses.replace(evaluation, steps=parameter_steps(tree, self.state.extract(self.model)))
        vote = self.voter.vote(evaluation, self._held_scored()[0])
        return ProposedWeights(weights=weights, vote_score=evaluation.score, test_score=test_score, vote=vote,
                               criterion=self.criterion)

    @limit_blas_threads
    def mli_accept_weights(self, weights: Weights) -> None:
        """Adopt ``weights`` (as a copy). Scores computed by :meth:`mli_test_weights` are reused, not redone."""
        tree = self._checked(weights)
        self.model = self._with_weights(tree)
        self._held_key = ScoreCache.key(tree)
        self._held = self._known.get(self._held_key)  # None: scored lazily when first needed
        if self._held is not None:
            self.voter.adopted(self._held[0])

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
        evaluation, test_score = self._held_scored()
        return evaluation.score, test_score

    def _held_scored(self) -> Tuple[Evaluation, float]:
        """The held model's vote-set evaluation and test score (computed once per held model)."""
        if self._held is None:
            self._held = self._known.get(self._held_key) or self._evaluate(self.model, self._held_key)
            self.voter.adopted(self._held[0])
        return self._held

    def _scored(self, tree: Any) -> Tuple[Evaluation, float]:
        """Scores of the model this learner would hold after adopting ``tree`` (remembered by its digest)."""
        key = ScoreCache.key(tree)
        return self._known.get(key) or self._evaluate(self._with_weights(tree), key)

    def _score(self, model: Any) -> Tuple[Evaluation, float]:
        """Accuracy and predictions on the vote set (and the training iterate's accuracy, for averaged SGD),
        accuracy on the test set."""
        vote_predictions = model.predict(self._x_vote)
        iterate = getattr(self.state, "iterate", lambda m: None)(model)
        hidden = self._accuracy(iterate, self._x_vote, self.data.y_vote) if iterate is not None else None
        evaluation = Evaluation(float(np.mean(vote_predictions == self.data.y_vote)), vote_predictions,
                                self.data.y_vote, hidden, true_label_margins(model, self._x_vote, self.data.y_vote))
        return evaluation, self._accuracy(model, self._x_test, self.data.y_test)

    def _evaluate(self, model: Any, key: str) -> Tuple[Evaluation, float]:
        """Score ``model`` and remember the result by its weights' digest."""
        scored = self._score(model)
        self._known[key] = scored
        self._known.move_to_end(key)
        while len(self._known) > KNOWN_EVALUATIONS:
            self._known.popitem(last=False)
        return scored

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).reshape(len(x), -1)
        return x if self.features is None else np.asarray(self.features.transform(x))

    def _checked(self, weights: Any, voting: bool = False) -> Any:
        """Received weights that fit this model (names, shapes, dtypes, finite); when ``voting``, also with
        plausible state. Adopting does not repeat that check: the vote covered it, and a learner that catches up
        (restored, rejoining) is legitimately many proposals behind."""
        received = weights.weights if isinstance(weights, Weights) else weights
        held = self.state.extract(self.model)
        tree = check_weights(received, held)
        if voting:
            self.state.check_plausible(tree, held, self._steps_per_proposal)
        return tree

    def _with_weights(self, tree: Any) -> Any:
        model = copy.deepcopy(self.model)
        self.state.assign(model, tree)
        return model

    @staticmethod
    def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(model.predict(x) == y)) if len(y) else float("nan")


def true_label_margins(model: Any, x: np.ndarray, y: np.ndarray) -> Optional[np.ndarray]:
    """Per sample: the decision score of the true label minus the best score of any other label (None when the
    model has no multi-class ``decision_function``)."""
    if not hasattr(model, "decision_function") or not hasattr(model, "classes_") or len(model.classes_) < 3:
        return None
    scores = np.asarray(model.decision_function(x), dtype=np.float64)
    columns = np.searchsorted(model.classes_, y)
    rows = np.arange(len(y))
    true = scores[rows, columns]
    scores[rows, columns] = -np.inf
    return true - scores.max(axis=1)


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
                     average: Any = True, vote_rule: VoteRuleLike = None, **params: Any) -> SKLearnLearner:
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
                          seed=seed, features=_features_for(features, data.n_features), vote_rule=vote_rule)


def make_mlp_learner(data: LearnerData, *, seed: int, epochs_per_proposal: int = 10,
                     hidden_layer_sizes: Sequence[int] = (64,), batch_size: int = 32,
                     learning_rate_init: float = 1e-3, alpha: float = 1e-4, vote_rule: VoteRuleLike = None,
                     **params: Any) -> SKLearnLearner:
    """A multi-layer perceptron trained by ``MLPClassifier.partial_fit`` (Adam, minibatches of ``batch_size``).

    Other keyword arguments go to ``MLPClassifier``. The optimizer state travels with the weights.
    """
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=tuple(hidden_layer_sizes), batch_size=batch_size,
                          learning_rate_init=learning_rate_init, alpha=alpha, random_state=seed, **params)
    return SKLearnLearner(model, data, epochs_per_proposal=epochs_per_proposal, seed=seed, vote_rule=vote_rule)


__all__ = ["SKLearnLearner", "make_sgd_learner", "make_mlp_learner", "polynomial_features"]
