"""A random-forest learner that grows the shared forest with ``warm_start``.

A proposal adds ``n_trees_per_proposal`` trees, trained on the proposer's own data, to a copy of the
forest everyone holds. The forest travels as plain typed arrays (one concatenated array per node field
of scikit-learn's tree structure, plus node counts): nothing in it can execute code, and decoding
checks every index before a tree is rebuilt (a bad child index would make prediction read out of
bounds). The held model can be exported as skops bytes (:meth:`mli_get_current_model`); read it back
with :func:`load_skops_forest`, which checks the file's types against an explicit allow-list.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from colearn.data.types import LearnerData
from colearn.learner_utils import ScoreCache, WeightsMismatchError
from colearn.vote_rules import Evaluation, Voter, VoteRuleLike
from colearn.ml_interface import (ColearnModel, MachineLearningInterface, ModelFormat, ProposedWeights,
                                  Weights)

SKOPS_TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)  # beyond skops' own defaults (numpy, builtins, sklearn)


def _node_dtype() -> np.dtype:
    from sklearn.tree._tree import NODE_DTYPE

    return np.dtype(NODE_DTYPE)


def forest_to_arrays(forest: Any) -> Dict[str, np.ndarray]:
    """The trees of a fitted forest as a dict of plain arrays (fresh copies)."""
    states = [tree.tree_.__getstate__() for tree in forest.estimators_]
    nodes = np.concatenate([s["nodes"] for s in states])
    arrays: Dict[str, np.ndarray] = {"node_count": np.asarray([s["node_count"] for s in states], dtype=np.int64),
                                     "max_depth": np.asarray([s["max_depth"] for s in states], dtype=np.int64)}
    for name in nodes.dtype.names:
        arrays[name] = np.ascontiguousarray(nodes[name])
    arrays["value"] = np.concatenate([s["values"][:, 0, :] for s in states]).astype(np.float64)
    return arrays


def _expected_layout() -> Dict[str, np.dtype]:
    layout = {"node_count": np.dtype(np.int64), "max_depth": np.dtype(np.int64)}
    dtype = _node_dtype()
    layout.update({name: dtype.fields[name][0].newbyteorder("=") for name in dtype.names})
    layout["value"] = np.dtype(np.float64)
    return layout


def check_forest_layout(arrays: Any, n_classes: int, max_trees: int, max_nodes: int = 10_000_000) -> None:
    """Check what the header of received forest arrays says (names, dtypes, shapes; not the values): the
    node arrays share one length, at most ``max_nodes``; raise :class:`WeightsMismatchError` naming the problem."""
    layout = _expected_layout()
    if not isinstance(arrays, dict) or list(arrays) != list(layout):
        keys = list(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise WeightsMismatchError(f"forest weights must be a dict with keys {list(layout)}, got {keys}")
    for name, dtype in layout.items():
        value = arrays[name]
        if not isinstance(value, np.ndarray) or value.dtype != dtype:
            got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise WeightsMismatchError(f"forest weight {name}: expected a {dtype} array, got {got}")
    counts = arrays["node_count"]
    if counts.ndim != 1 or not 1 <= len(counts) <= max_trees or arrays["max_depth"].shape != counts.shape:
        raise WeightsMismatchError(f"forest must have 1..{max_trees} trees with one node_count and max_depth "
                                   f"each, got shapes {counts.shape} and {arrays['max_depth'].shape}")
    total = len(arrays["left_child"]) if arrays["left_child"].ndim == 1 else -1
    for name in layout:
        if name in ("node_count", "max_depth"):
            continue
        want = (total, n_classes) if name == "value" else (total,)
        if arrays[name].shape != want or not 1 <= total <= max_nodes:
            per = f"({n_classes} classes) " if name == "value" else ""
            raise WeightsMismatchError(f"forest weight {name}: shape {arrays[name].shape}, expected one entry {per}"
                                       f"per node, like left_child, and 1..{max_nodes} nodes")


def check_forest_arrays(arrays: Any, n_features: int, n_classes: int, max_trees: int,
                        max_nodes: int = 10_000_000) -> Dict[str, np.ndarray]:
    """Validate received forest arrays; raise :class:`WeightsMismatchError` naming the problem."""
    check_forest_layout(arrays, n_classes, max_trees, max_nodes)
    counts, total = arrays["node_count"], len(arrays["left_child"])
    if np.any(counts < 1) or int(counts.sum()) != total:
        raise WeightsMismatchError(f"node counts must be >= 1 and add up to the {total} nodes")
    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)  # node index within its tree
    size = np.repeat(counts, counts)
    left, right, feature = arrays["left_child"], arrays["right_child"], arrays["feature"]
    internal = left != -1
    bad_children = internal & ((left <= local) | (left >= size) | (right <= local) | (right >= size))
    bad_leaves = ~internal & (right != -1)
    bad_features = internal & ((feature < 0) | (feature >= n_features))
    for problem, mask in (("a child index outside its tree (or not after its parent)", bad_children),
                          ("a leaf with one child", bad_leaves),
                          (f"a feature outside 0..{n_features - 1}", bad_features)):
        if mask.any():
            node = int(np.flatnonzero(mask)[0])
            tree = int(np.searchsorted(np.cumsum(counts), node, side="right"))
            raise WeightsMismatchError(f"forest tree {tree}, node {int(local[node])}: {problem}")
    for name in ("threshold", "value"):
        if not np.all(np.isfinite(arrays[name][internal] if name == "threshold" else arrays[name])):
            raise WeightsMismatchError(f"forest weight {name}: contains NaN or infinite values")
    if np.any(arrays["value"] < 0):
        raise WeightsMismatchError("forest weight value: class weights must be non-negative")
    return {name: np.array(value, copy=True) for name, value in arrays.items()}


def arrays_to_trees(arrays: Dict[str, np.ndarray], template: Any) -> List[Any]:
    """Rebuild decision trees from checked arrays, copying ``template``'s fitted attributes (classes etc.)."""
    from sklearn.tree._tree import Tree

    dtype = _node_dtype()
    n_classes = arrays["value"].shape[1]
    trees, start = [], 0
    for count, depth in zip(arrays["node_count"].tolist(), arrays["max_depth"].tolist()):
        nodes = np.empty(count, dtype=dtype)
        for name in dtype.names:
            nodes[name] = arrays[name][start: start + count]
        values = np.ascontiguousarray(arrays["value"][start: start + count].reshape(count, 1, n_classes))
        tree = Tree(template.n_features_in_, np.asarray([n_classes], dtype=np.intp), 1)
        tree.__setstate__({"max_depth": int(depth), "node_count": count, "nodes": nodes, "values": values})
        estimator = copy.copy(template)
        estimator.tree_ = tree
        trees.append(estimator)
        start += count
    return trees


class RandomForestLearner(MachineLearningInterface):
    """Collective random forest: each accepted proposal adds trees grown on the proposer's data.

    ``max_trees``: the forest keeps at most this many trees (the oldest are dropped); received forests
    with more are refused. Other keyword arguments go to ``RandomForestClassifier`` (e.g. ``max_depth``).
    """

    criterion = "accuracy"

    def __init__(self, data: LearnerData, *, seed: int = 0, n_trees_per_proposal: int = 10,
                 max_trees: int = 300, vote_rule: VoteRuleLike = None, **forest_params: Any):
        from sklearn.ensemble import RandomForestClassifier

        if not isinstance(n_trees_per_proposal, int) or n_trees_per_proposal < 1:
            raise ValueError(f"n_trees_per_proposal must be an integer >= 1, got {n_trees_per_proposal!r}")
        if not isinstance(max_trees, int) or max_trees < n_trees_per_proposal:
            raise ValueError(f"max_trees must be an integer >= n_trees_per_proposal, got {max_trees!r}")
        if len(data.y_train) == 0 or len(data.y_vote) == 0:
            raise ValueError("the learner needs training and vote data")
        self.data, self.seed = data, int(seed)
        self.n_trees_per_proposal, self.max_trees = n_trees_per_proposal, max_trees
        self.n_features, self.n_classes = data.n_features, data.n_classes
        self._rng = np.random.default_rng(np.random.SeedSequence([self.seed, 11]))
        self._x, self._y, self._w = self._padded_training_set()
        self.model = RandomForestClassifier(n_estimators=n_trees_per_proposal, warm_start=True,
                                            random_state=self._next_seed(), **forest_params)
        self.model.fit(self._x, self._y, sample_weight=self._w)
        self.voter = Voter(vote_rule)
        self._cache = ScoreCache()
        self._held_key = self._cache.key(forest_to_arrays(self.model))
        self._held_scores: Optional[Tuple[float, float]] = None

    def _padded_training_set(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Own training data plus one zero-weight row per class it lacks, so every tree knows every class."""
        x = self.data.x_train.reshape(len(self.data.y_train), -1)
        missing = np.setdiff1d(np.arange(self.n_classes), self.data.y_train)
        pad_x = np.zeros((len(missing), x.shape[1]), dtype=x.dtype)
        weights = np.r_[np.ones(len(x)), np.zeros(len(missing))]
        return np.concatenate([x, pad_x]), np.concatenate([self.data.y_train, missing]).astype(np.int64), weights

    def _next_seed(self) -> int:
        return int(self._rng.integers(2**31 - 1))

    def mli_propose_weights(self) -> Weights:
        """Grow ``n_trees_per_proposal`` trees on own data onto a copy of the held forest."""
        candidate = copy.deepcopy(self.model)
        candidate.set_params(n_estimators=len(candidate.estimators_) + self.n_trees_per_proposal,
                             random_state=self._next_seed())
        candidate.fit(self._x, self._y, sample_weight=self._w)
        if len(candidate.estimators_) > self.max_trees:
            candidate.estimators_ = candidate.estimators_[-self.max_trees:]
            candidate.n_estimators = self.max_trees
        return Weights(weights=forest_to_arrays(candidate))

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        arrays = self._checked(weights)
        key = self._cache.key(arrays)
        scores = self._cache.get(arrays, key)
        if scores is None:
            scores = self._score(self._forest_from(arrays))
            self._cache.put(arrays, *scores, key=key)
        held_vote, _ = self._current_scores()
        vote = self.voter.vote(Evaluation(scores[0], labels=self.data.y_vote),
                               Evaluation(held_vote, labels=self.data.y_vote))
        return ProposedWeights(weights=weights, vote_score=scores[0], test_score=scores[1], vote=vote,
                               criterion=self.criterion)

    def mli_accept_weights(self, weights: Weights) -> None:
        arrays = self._checked(weights)
        self.model = self._forest_from(arrays)
        self._held_key = self._cache.key(arrays)
        self._held_scores = self._cache.get(arrays, self._held_key)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=forest_to_arrays(self.model))

    def mli_get_current_model(self) -> ColearnModel:
        """The held forest as skops bytes (read it with :func:`load_skops_forest`)."""
        import skops.io as sio

        return ColearnModel(model_format=ModelFormat.SKOPS, model=sio.dumps(self.model))

    @property
    def current_scores(self) -> Tuple[float, float]:
        return self._current_scores()

    def _current_scores(self) -> Tuple[float, float]:
        if self._held_scores is None:
            self._held_scores = self._cache.get(None, self._held_key) or self._score(self.model)
            self._cache.put(None, *self._held_scores, key=self._held_key)
        return self._held_scores

    def _checked(self, weights: Any) -> Dict[str, np.ndarray]:
        received = weights.weights if isinstance(weights, Weights) else weights
        return check_forest_arrays(received, self.n_features, self.n_classes, self.max_trees)

    def mli_check_layout(self, weights: Any) -> None:
        """A forest grows, so the layout is checked against its kind (names, dtypes, classes), not its size."""
        check_forest_layout(weights, self.n_classes, self.max_trees)

    def _forest_from(self, arrays: Dict[str, np.ndarray]) -> Any:
        forest = copy.deepcopy(self.model)  # keeps this learner's own settings, classes and feature count
        forest.estimators_ = arrays_to_trees(arrays, self.model.estimators_[0])
        forest.n_estimators = len(forest.estimators_)
        return forest

    def _score(self, forest: Any) -> Tuple[float, float]:
        """Accuracy on the vote set and on the test set (one evaluation)."""
        d = self.data
        return (float(np.mean(forest.predict(d.x_vote.reshape(len(d.y_vote), -1)) == d.y_vote)),
                float(np.mean(forest.predict(d.x_test.reshape(len(d.y_test), -1)) == d.y_test)) if len(d.y_test)
                else float("nan"))


def load_skops_forest(blob: bytes, extra_trusted: Sequence[str] = ()) -> Any:
    """Load a model exported as skops bytes, refusing any type outside the allow-list
    (:data:`SKOPS_TRUSTED_TYPES` plus ``extra_trusted``); never trusts what the file itself lists."""
    import skops.io as sio

    allowed = set(SKOPS_TRUSTED_TYPES) | set(extra_trusted)
    untrusted = [name for name in sio.get_untrusted_types(data=blob) if name not in allowed]
    if untrusted:
        raise WeightsMismatchError(f"skops file holds types outside the allow-list: {untrusted}")
    return sio.loads(blob, trusted=sorted(allowed))


def make_random_forest_learner(data: LearnerData, *, seed: int, n_trees_per_proposal: int = 10,
                               max_trees: int = 300, vote_rule: VoteRuleLike = None,
                               **forest_params: Any) -> RandomForestLearner:
    """Registry factory for :class:`RandomForestLearner`."""
    return RandomForestLearner(data, seed=seed, n_trees_per_proposal=n_trees_per_proposal, max_trees=max_trees,
                               vote_rule=vote_rule, **forest_params)


__all__ = ["RandomForestLearner", "make_random_forest_learner", "forest_to_arrays", "check_forest_arrays",
           "check_forest_layout", "arrays_to_trees", "load_skops_forest", "SKOPS_TRUSTED_TYPES"]
