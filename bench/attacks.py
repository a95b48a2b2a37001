"""Malicious learners for the attack benchmark and the attack tests: MLI wrappers around honest learners.

A :class:`Coalition` is what the attackers share (who they are, which proposals are theirs). Each
:class:`MaliciousLearner` wraps an honest learner built on the attacker's own data (or on poisoned data, for the
label flip), proposes what its attack says and votes as its coalition agreed. Everything is seeded.

Proposal attacks: ``zero``, ``random``, ``nan`` weights; ``label-flip`` (trained on labels c -> c+1);
``class-cut`` (an honest proposal whose target-class bias is lowered by as much as the attacker's own vote
set still approves); ``hidden-state`` (honest weights, SGD's step counter ``t_`` advanced as far as the
attacker's own plausibility check allows: ``1e15`` is refused outright); ``garbage-round0``
(random weights in round 0 only); ``mutate`` (an honest proposal; the attacker then rewrites the proposal it
is handed to test and to adopt, in place and by swapping entries). Vote attacks: ``collude`` (approve the
coalition's proposals, vote honestly otherwise), ``reject`` (reject everything), ``clique`` (approve the
coalition's, reject everyone else's).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Set

import numpy as np

from colearn.encoding import weights_digest
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights

TARGET_CLASS = 1
PROPOSAL_ATTACKS = ("zero", "random", "nan", "label-flip", "class-cut", "hidden-state", "garbage-round0",
                    "mutate", "honest")
VOTE_ATTACKS = ("honest", "collude", "reject", "clique")


@dataclass
class Coalition:
    """What the attackers share: their indices and the digests of the proposals they made."""

    members: Set[int]
    proposals: Set[str] = field(default_factory=set)


def _as_numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def digest_of(weights: Any) -> Optional[str]:
    """A content digest of weights that may hold tensors (converted to arrays first)."""
    tree = weights.weights if isinstance(weights, Weights) else weights
    if isinstance(tree, dict):
        tree = {str(k): _as_numpy(v) for k, v in tree.items()}
    try:
        return weights_digest(tree)
    except (TypeError, ValueError):
        return None


def map_floats(tree: Any, change: Callable[[str, np.ndarray], np.ndarray]) -> Any:
    """A copy of a weights dict with ``change(name, array)`` applied to every float array."""
    out = {}
    for key, value in tree.items():
        array = np.asarray(_as_numpy(value))
        out[key] = change(key, array).astype(array.dtype) if array.dtype.kind == "f" and array.ndim else array.copy()
    return type(tree)(out) if type(tree) is not dict else out


def bias_keys(tree: Any, n_classes: int) -> List[str]:
    """The entries that hold the output layer's per-class bias (sklearn intercepts, torch's last bias)."""
    keys = [k for k, v in tree.items() if "intercept" in k and np.ndim(_as_numpy(v)) == 1]
    if keys:
        return keys
    biases = [k for k, v in tree.items() if k.endswith("bias") and np.shape(_as_numpy(v)) == (n_classes,)]
    return biases[-1:]


class MaliciousLearner(MachineLearningInterface):
    """An attacker: ``inner`` is an honest learner on the attacker's data (poisoned for a label flip)."""

    def __init__(self, inner: MachineLearningInterface, index: int, coalition: Coalition, proposal_attack: str,
                 vote_attack: str, n_classes: int, seed: int):
        if proposal_attack not in PROPOSAL_ATTACKS or vote_attack not in VOTE_ATTACKS:
            raise ValueError(f"unknown attack {proposal_attack!r}/{vote_attack!r}")
        self.inner, self.index, self.coalition = inner, index, coalition
        self.proposal_attack, self.vote_attack = proposal_attack, vote_attack
        self.n_classes = n_classes
        self.rng = np.random.default_rng([seed, index, 99])
        self.n_proposals = 0
        self.cut_sizes: List[float] = []

    # ---- proposing -------------------------------------------------------------------------------
    def mli_propose_weights(self) -> Weights:
        honest = self.inner.mli_propose_weights()
        attack = self.proposal_attack
        if attack == "garbage-round0":
            attack = "random" if self.n_proposals == 0 else "honest"
        self.n_proposals += 1
        tree = honest.weights
        if attack == "zero":
            tree = map_floats(tree, lambda k, a: np.zeros_like(a))
        elif attack == "random":
            tree = map_floats(tree, lambda k, a: self.rng.normal(0.0, float(np.std(a)) or 1.0, a.shape))
        elif attack == "nan":
            tree = map_floats(tree, lambda k, a: np.full_like(a, np.nan))
        elif attack == "hidden-state" and "t_" in tree:  # the largest step counter its own check lets through
            from colearn_other.sklearn_state import MAX_STEP_GROWTH

            held = float(self.inner.mli_get_current_weights().weights["t_"])
            grown = held + MAX_STEP_GROWTH * self.inner._steps_per_proposal
            tree = dict(tree, t_=np.asarray(grown, dtype=np.asarray(tree["t_"]).dtype))
        elif attack == "class-cut":
            tree = self._class_cut(tree)
        proposal = Weights(weights=tree, training_summary=honest.training_summary)
        digest = digest_of(proposal)
        if digest is not None:
            self.coalition.proposals.add(digest)
        return proposal

    def _cut(self, tree: Any, amount: float) -> Any:
        keys = bias_keys(tree, self.n_classes)

        def lower(key: str, array: np.ndarray) -> np.ndarray:
            array = array.copy()
            if key in keys:
                array[..., TARGET_CLASS] -= amount
            return array

        return map_floats(tree, lower)

    def _class_cut(self, tree: Any) -> Any:
        """The largest cut of the target class's bias that the attacker's own vote still approves."""
        def approved(amount: float) -> bool:
            verdict = self.inner.mli_test_weights(Weights(weights=self._cut(tree, amount)))
            return verdict.vote is True

        voter = getattr(self.inner, "voter", None)
        memory = copy.deepcopy(voter.memory) if voter is not None else None  # probing must not train its own vote

        low, high = 0.0, 1.0
        while high < 1e4 and approved(high):
            low, high = high, high * 2
        for _ in range(8):
            middle = (low + high) / 2
            low, high = (middle, high) if approved(middle) else (low, middle)
        if voter is not None:
            voter.memory = memory
        self.cut_sizes.append(low)
        return self._cut(tree, low)

    # ---- voting ----------------------------------------------------------------------------------
    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        ours = digest_of(weights) in self.coalition.proposals
        if self.proposal_attack == "mutate":
            self._mutate(weights)
        try:
            verdict = self.inner.mli_test_weights(weights)
        except Exception:  # e.g. NaN weights its own model refuses: an accomplice approves anyway
            verdict = ProposedWeights(weights=weights, vote_score=1.0, test_score=1.0, vote=False)
        vote = verdict.vote
        if self.vote_attack == "collude" and ours:
            vote = True
        elif self.vote_attack == "reject":
            vote = False
        elif self.vote_attack == "clique":
            vote = ours
        return verdict.model_copy(update={"vote": vote})

    def _mutate(self, weights: Weights) -> None:
        """Rewrite the handed proposal for everyone after us: in place where it can, else by swapping entries."""
        tree = weights.weights
        for key in list(tree):
            value = tree[key]
            try:
                if hasattr(value, "fill_"):
                    value.fill_(0.0)
                else:
                    np.asarray(value)[...] = 0
            except (ValueError, RuntimeError):  # read-only: swap the entry instead
                tree[key] = np.zeros_like(np.asarray(_as_numpy(value)))

    def mli_accept_weights(self, weights: Weights) -> None:
        if self.proposal_attack == "mutate":  # adopt a clean copy, then spoil what the others may share
            clean = Weights(weights=map_floats(weights.weights, lambda k, a: a.copy()))
            self._mutate(weights)
            weights = clean
        self.inner.mli_accept_weights(weights)

    def mli_get_current_weights(self) -> Weights:
        return self.inner.mli_get_current_weights()


def evaluate_on(learner: MachineLearningInterface, x: np.ndarray) -> np.ndarray:
    """Predicted labels of ``learner``'s held model on ``x`` (scikit-learn and PyTorch learners)."""
    if hasattr(learner, "model") and hasattr(learner.model, "predict") and hasattr(learner, "_transform"):
        return np.asarray(learner.model.predict(learner._transform(x)))
    from colearn.ml_interface import PredictionRequest

    outputs = learner.mli_make_prediction(PredictionRequest(name="bench", input_data=x)).prediction_data
    return np.asarray(_as_numpy(outputs)).argmax(axis=1)


def recall(predictions: np.ndarray, labels: np.ndarray, label: int) -> float:
    rows = labels == label
    return float(np.mean(predictions[rows] == label)) if rows.any() else float("nan")


__all__ = ["Coalition", "MaliciousLearner", "PROPOSAL_ATTACKS", "TARGET_CLASS", "VOTE_ATTACKS", "bias_keys",
           "digest_of", "evaluate_on", "map_floats", "recall"]