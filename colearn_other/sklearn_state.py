"""What of a scikit-learn estimator travels as "weights", and how it is read, checked and written back.

Weights that leave a learner are a ``dict`` of name -> numpy array (or list of arrays, for MLP layers),
always fresh copies: never the estimator's own arrays. Scalars such as the step counter ``t_`` travel as
0-d arrays. Received weights are checked against the held estimator's (names, list lengths, shapes,
dtypes, finite values) before anything is written, and are written as copies.

- :class:`LinearState`: SGD-family linear models (``SGDClassifier``, ``Perceptron``,
  ``PassiveAggressiveClassifier``): ``coef_``, ``intercept_`` and the step counter ``t_``; with
  ``average`` (averaged SGD) instead the standard and the averaged coefficients and intercepts, which
  partial_fit continues from, and ``t_`` (``coef_`` is one of the two, chosen by ``t_`` as sklearn does).
- :class:`MLPState`: ``MLPClassifier``: ``coefs_``, ``intercepts_``, ``t_`` and the optimizer's state
  (Adam moments and step, or SGD velocities and learning rate), so that training continues from the
  shared state whoever proposes next.
- :class:`AttributeState`: any other ``partial_fit`` estimator, given the names of its fitted numeric
  attributes (e.g. ``GaussianNB``: ``theta_``, ``var_``, ``class_count_``, ``class_prior_``, ``epsilon_``).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from colearn.learner_utils import WeightsMismatchError, check_arrays_match

ArrayTree = Dict[str, Union[np.ndarray, List[np.ndarray]]]
MAX_STEP_GROWTH = 10  # how many times one local proposal's steps a received step counter may advance by


def _copy(value: Any) -> Union[np.ndarray, List[np.ndarray]]:
    if isinstance(value, (list, tuple)):
        return [np.array(v, copy=True) for v in value]
    return np.array(value, copy=True)


def flatten(tree: Any, *, what: str = "weights") -> Tuple[List[str], List[Any]]:
    """Names (``coefs_[1]`` for list items) and values of a weights dict, in order."""
    if not isinstance(tree, dict):
        raise WeightsMismatchError(f"{what} must be a dict of named arrays, got {type(tree).__name__}")
    names, values = [], []
    for key, value in tree.items():
        if isinstance(value, (list, tuple)):
            names.extend(f"{key}[{i}]" for i in range(len(value)))
            values.extend(value)
        else:
            names.append(str(key))
            values.append(value)
    return names, values


def check_weights(received: Any, expected: ArrayTree) -> ArrayTree:
    """Validate ``received`` against ``expected`` (same keys in order, list lengths, shapes, dtypes, finite);
    return a copy of it. Raises :class:`WeightsMismatchError` naming the first offending entry."""
    if not isinstance(received, dict):
        raise WeightsMismatchError(f"weights must be a dict of named arrays, got {type(received).__name__}")
    if list(received) != list(expected):
        missing = [k for k in expected if k not in received]
        extra = [k for k in received if k not in expected]
        raise WeightsMismatchError(f"weight names differ from the model's: missing {missing}, unexpected {extra}"
                                   if missing or extra else "weight names are in a different order than the model's")
    for key, want in expected.items():
        got = received[key]
        if isinstance(want, list) and (not isinstance(got, (list, tuple)) or len(got) != len(want)):
            length = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            raise WeightsMismatchError(f"weight {key}: expected a list of {len(want)} arrays, got {length}")
        if not isinstance(want, list) and isinstance(got, (list, tuple)):
            raise WeightsMismatchError(f"weight {key}: expected one array, got a list")
    names, got_values = flatten(received)
    _, want_values = flatten(expected)
    arrays = check_arrays_match(got_values, want_values, names)  # also refuses NaN and infinity
    result: ArrayTree = {}
    position = 0
    for key, want in expected.items():
        if isinstance(want, list):
            result[key] = [np.array(a, copy=True) for a in arrays[position: position + len(want)]]
            position += len(want)
        else:
            result[key] = np.array(arrays[position], copy=True)
            position += 1
    return result


class LinearState:
    """Weights of SGD-family linear classifiers (see module docstring)."""

    @staticmethod
    def supports(model: Any) -> bool:
        from sklearn.linear_model._stochastic_gradient import BaseSGDClassifier

        return isinstance(model, BaseSGDClassifier)

    def extract(self, model: Any) -> ArrayTree:
        step = np.asarray(float(model.t_), dtype=np.float64)
        if not getattr(model, "average", False):
            return {"coef_": _copy(model.coef_), "intercept_": _copy(model.intercept_), "t_": step}
        # averaged SGD: coef_/intercept_ are one of these pairs (which one follows from t_), not sent twice
        return {"standard_coef_": _copy(model._standard_coef), "standard_intercept_": _copy(model._standard_intercept),
                "average_coef_": _copy(model._average_coef), "average_intercept_": _copy(model._average_intercept),
                "t_": step}

    def assign(self, model: Any, tree: ArrayTree) -> None:
        model.t_ = float(tree["t_"])
        if not getattr(model, "average", False):
            model.coef_, model.intercept_ = _copy(tree["coef_"]), _copy(tree["intercept_"])
            return
        model._standard_coef = _copy(tree["standard_coef_"])
        model._standard_intercept = _copy(tree["standard_intercept_"])
        model._average_coef, model._average_intercept = _copy(tree["average_coef_"]), _copy(tree["average_intercept_"])
        # the rule partial_fit applies after each call: which of the two the model predicts with
        use_average = model.average <= model.t_ - 1
        model.coef_ = model._average_coef if use_average else model._standard_coef
        model.intercept_ = model._average_intercept if use_average else model._standard_intercept

    @staticmethod
    def iterate(model: Any) -> Any:
        """With ``average``: a copy of ``model`` that predicts with its training iterate (what the next
        proposal trains from), so that the vote covers it too; None otherwise."""
        if not getattr(model, "average", False) or not hasattr(model, "_standard_coef"):
            return None
        iterate = copy.copy(model)
        iterate.coef_, iterate.intercept_ = model._standard_coef, model._standard_intercept
        return iterate

    @staticmethod
    def check_plausible(tree: ArrayTree, held: ArrayTree, steps: int) -> None:
        """Refuse a step counter no honest proposal could carry.

        ``t_`` is invisible to the vote's scores, yet it sets how far averaged SGD's average moves from then on
        (``t_ = 1e15`` freezes the shared model). An honest proposal advances it by the samples its proposer
        trained on, so it must lie between the held ``t_`` and that plus ``MAX_STEP_GROWTH`` times the ``steps``
        one proposal takes here (learners' data sizes differ, hence the slack).
        """
        received, before = float(tree["t_"]), float(held["t_"])
        if not before <= received <= before + MAX_STEP_GROWTH * steps:
            raise WeightsMismatchError(f"weight t_: step counter {received:g} is implausible after {before:g} "
                                       f"(a proposal advances it by at most {MAX_STEP_GROWTH * steps:g} here)")

    def reset(self, model: Any) -> None:
        """Back to the untrained state partial_fit starts from: zero coefficients, step counter 1."""
        tree = self.extract(model)
        zeros = {k: np.zeros_like(v) for k, v in tree.items()}
        zeros["t_"] = np.asarray(1.0)
        self.assign(model, zeros)


class MLPState:
    """Weights of ``MLPClassifier`` including its optimizer's state (see module docstring)."""

    @staticmethod
    def supports(model: Any) -> bool:
        from sklearn.neural_network import MLPClassifier

        return isinstance(model, MLPClassifier)

    def extract(self, model: Any) -> ArrayTree:
        tree: ArrayTree = {"coefs_": _copy(model.coefs_), "intercepts_": _copy(model.intercepts_),
                           "t_": np.asarray(int(model.t_), dtype=np.int64)}
        optimizer = getattr(model, "_optimizer", None)
        if model.solver == "adam":
            tree.update(adam_step=np.asarray(int(optimizer.t), dtype=np.int64),
                        adam_m=_copy(optimizer.ms), adam_v=_copy(optimizer.vs))
        elif model.solver == "sgd":
            tree.update(sgd_velocities=_copy(optimizer.velocities),
                        sgd_learning_rate=np.asarray(float(optimizer.learning_rate), dtype=np.float64))
        return tree

    def assign(self, model: Any, tree: ArrayTree) -> None:
        model.coefs_, model.intercepts_ = _copy(tree["coefs_"]), _copy(tree["intercepts_"])
        model.t_ = int(tree["t_"])
        optimizer = model._optimizer
        if model.solver == "adam":
            optimizer.t = int(tree["adam_step"])
            optimizer.ms, optimizer.vs = _copy(tree["adam_m"]), _copy(tree["adam_v"])
        elif model.solver == "sgd":
            optimizer.velocities = _copy(tree["sgd_velocities"])
            optimizer.learning_rate = float(tree["sgd_learning_rate"])

    @staticmethod
    def check_plausible(tree: ArrayTree, held: ArrayTree, steps: int) -> None:
        """The optimizer state travels with the weights (finite, checked shapes); see docs/robustness.md."""

    def reset(self, model: Any) -> None:
        """Keep the seeded random initialisation (after the one allocation step); the optimizer restarts."""
        optimizer = model._optimizer
        if model.solver == "adam":
            optimizer.t = 0
            optimizer.ms = [np.zeros_like(m) for m in optimizer.ms]
            optimizer.vs = [np.zeros_like(v) for v in optimizer.vs]
        elif model.solver == "sgd":
            optimizer.velocities = [np.zeros_like(v) for v in optimizer.velocities]
            optimizer.learning_rate = float(optimizer.learning_rate_init)
        model.t_ = 0


class AttributeState:
    """Weights of any estimator, given the names of its fitted numeric attributes."""

    def __init__(self, attributes: Sequence[str]):
        if not attributes:
            raise ValueError("weight_attributes must name at least one fitted attribute")
        self.attributes = tuple(attributes)

    def extract(self, model: Any) -> ArrayTree:
        tree: ArrayTree = {}
        for name in self.attributes:
            if not hasattr(model, name):
                raise AttributeError(f"{type(model).__name__} has no fitted attribute {name!r} "
                                     "(check weight_attributes)")
            value = getattr(model, name)
            tree[name] = _copy(value)
        return tree

    def assign(self, model: Any, tree: ArrayTree) -> None:
        for name in self.attributes:
            current = getattr(model, name)
            value = _copy(tree[name])
            setattr(model, name, value.item() if np.isscalar(current) and not isinstance(current, np.ndarray)
                    else value)

    @staticmethod
    def check_plausible(tree: ArrayTree, held: ArrayTree, steps: int) -> None:
        """Every named attribute is what the vote scores."""

    def reset(self, model: Any) -> None:
        """Generic estimators keep whatever their first partial_fit call made."""


def state_for(model: Any, weight_attributes: Sequence[str] | None = None) -> Any:
    """The state adapter for ``model`` (explicit ``weight_attributes`` win)."""
    if weight_attributes:
        return AttributeState(weight_attributes)
    for adapter in (LinearState, MLPState):
        if adapter.supports(model):
            return adapter()
    raise TypeError(f"don't know which attributes of a {type(model).__name__} are its weights: "
                    "pass weight_attributes=[...] naming its fitted numeric attributes")
