"""What a vote sees: a model's :class:`Evaluation` on a voter's vote set, and the evidence computed from it.

Pure functions of the proposal's and the held model's evaluations (and, for :func:`singled_out`, of the shifts a
voter remembers): flipped predictions per class, margin shifts per class, how far each output unit moved, and the
floors a model must beat to have learnt anything. :mod:`colearn.vote_rules` turns them into votes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """A model's result on a voter's vote set: the score, and optionally predicted and true labels.

    ``hidden``: where the model trains from a state other than the one it predicts with (averaged SGD's
    iterate), that state's score: a peer's proposal carries it, so the vote must cover it too.
    ``margins``: per vote-set sample, the model's score for the true label minus its best score for any other
    label (positive: right, and by how much): evidence on every sample, not only on those whose prediction flips.
    ``steps``: how far the proposal moves each output unit of each parameter array from the held model
    (:func:`parameter_steps`): evidence that needs no data at all.
    """

    score: float
    predictions: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    hidden: Optional[float] = None
    margins: Optional[np.ndarray] = None
    steps: Optional[Tuple[np.ndarray, ...]] = None


def class_losses(proposal: Evaluation, held: Evaluation) -> Dict[Any, int]:
    """Per true class: vote-set samples the held model gets right and the proposal gets wrong, minus the reverse."""
    if proposal.predictions is None or held.predictions is None or proposal.labels is None or \
            held.labels is None or not np.array_equal(held.labels, proposal.labels):
        return {}  # nothing to compare sample by sample (e.g. a vote loader that shuffles)
    labels = np.asarray(proposal.labels)
    was_right = np.asarray(held.predictions) == labels
    is_right = np.asarray(proposal.predictions) == labels
    losses = {}
    for label in np.unique(labels):
        rows = labels == label
        losses[label.item()] = int(np.sum(was_right[rows] & ~is_right[rows]) - np.sum(~was_right[rows] & is_right[rows]))
    return losses


def class_shifts(proposal: Evaluation, held: Optional[Evaluation], min_samples: int = 3) -> Dict[Any, float]:
    """Per class with at least ``min_samples`` vote-set samples: how much the proposal moves the mean margin of
    that class's samples (:attr:`Evaluation.margins`) against the held model, in units of the held model's mean
    absolute margin (so that shifts early and late in training compare). Empty without margins."""
    if held is None or proposal.margins is None or held.margins is None or proposal.labels is None or \
            held.labels is None or not np.array_equal(held.labels, proposal.labels) or \
            len(proposal.margins) != len(proposal.labels):
        return {}
    labels = np.asarray(proposal.labels)
    new, old = np.asarray(proposal.margins, dtype=np.float64), np.asarray(held.margins, dtype=np.float64)
    if not (np.all(np.isfinite(new)) and np.all(np.isfinite(old))):
        return {}
    scale = float(np.mean(np.abs(old))) or 1.0
    shifts = {}
    for label in np.unique(labels):
        rows = labels == label
        if rows.sum() >= min_samples:
            shifts[label.item()] = float(np.mean(new[rows]) - np.mean(old[rows])) / scale
    return shifts


def singled_out(shifts: Mapping[Any, float], history: Mapping[Any, Sequence[float]], spread: float,
                floor: float, min_history: int = 3) -> Optional[Any]:
    """A class the proposal pushes down more than ordinary proposals do, or None.

    A class is singled out when its margin shift is below ``-floor`` *and* below the median of the shifts this
    voter saw for that class (``history``) by more than ``spread`` robust standard deviations (1.4826 * MAD). An honest
    proposal moves every class within the spread the voter has seen (on non-IID data that spread is wide,
    because proposers lacking a class push it down); a proposal that lowers one class's scores on purpose (a
    bias cut that erases the class while accuracy holds) stands out on the samples of that class.
    """
    for label, shift in shifts.items():
        seen = history.get(label, [])
        if shift >= -floor or len(seen) < min_history:
            continue
        median = float(np.median(seen))
        deviation = 1.4826 * float(np.median(np.abs(np.asarray(seen) - median)))
        if shift < median - spread * deviation:
            return label
    return None


def _leaves(tree: Mapping[str, Any]) -> List[Tuple[str, np.ndarray]]:
    """The arrays of a weights tree in order, lists of arrays (an MLP's layers) entry by entry."""
    leaves = []
    for key, value in tree.items():
        parts = value if isinstance(value, (list, tuple)) else [value]
        leaves.extend((f"{key}[{i}]", np.asarray(part)) for i, part in enumerate(parts))
    return leaves


def parameter_steps(proposal: Mapping[str, Any], held: Mapping[str, Any]) -> Optional[Tuple[np.ndarray, ...]]:
    """How far a proposal moves each output unit: per float array of at least one dimension (in key order), the
    largest absolute change of each entry of a 1-D array, or of each row of a larger one (a class's coefficients,
    a layer's unit). None when the two do not have the same layout."""
    new_leaves, old_leaves = _leaves(proposal), _leaves(held)
    if [k for k, _ in new_leaves] != [k for k, _ in old_leaves]:
        return None
    steps = []
    for (_, new), (_, old) in zip(new_leaves, old_leaves):
        if new.shape != old.shape or new.ndim == 0 or not np.issubdtype(new.dtype, np.floating):
            continue
        change = np.abs(new.astype(np.float64) - old.astype(np.float64)).reshape(len(new), -1)
        steps.append(change.max(axis=1))
    return tuple(steps)


def output_layer_steps(proposal: Mapping[str, Any], held: Mapping[str, Any]) -> Optional[Tuple[np.ndarray, ...]]:
    """:func:`parameter_steps` of a neural network's output layer only: the last array of two or more dimensions
    (in key order) and the arrays after it (its bias). None when there is no such array or the layouts differ.

    A class cut acts on the output units, one per class, and honest training moves all of them; in a hidden
    ReLU layer most units can be dead, so its median unit barely moves and an honest step would look lopsided.
    Measured on digits (5 and 10 learners, IID and Dirichlet 0.3): an honest proposal never moved an output unit
    more than 10.4 times the median one that moved with torch-mlp (seeds 0-5), 11.2 times with torch-cnn (0-2).
    """
    keys = list(proposal)
    matrices = [index for index, key in enumerate(keys) if np.ndim(proposal[key]) >= 2]
    if not matrices or any(key not in held for key in keys[matrices[-1]:]):
        return None
    tail = keys[matrices[-1]:]
    return parameter_steps({key: proposal[key] for key in tail}, {key: held[key] for key in tail})


def lopsided_step(steps: Optional[Sequence[np.ndarray]], factor: float, min_units: int = 3) -> Optional[int]:
    """The first parameter array (index into ``steps``) in which the proposal moves one output unit more than
    ``factor`` times the median unit that moved, or None.

    One proposer's training moves the units of a layer by comparable amounts (measured on digits: never 100 times
    the median in an honest run). A bias cut sized to what the attacker's own vote tolerates is, where the
    attacker holds no sample of the class, thousands of times the others' steps and erases the class for good;
    this check needs no data of that class, so voters that hold none refuse it too. Units that did not move at
    all (classes a restricted softmax leaves out of training) are no reference; where only two units moved, the
    smaller is. Arrays with fewer than ``min_units`` units, or in which fewer than two moved, are not judged.
    """
    for index, step in enumerate(steps or ()):
        moved = np.asarray(step)[np.asarray(step) > 0]
        if len(step) < min_units or len(moved) < 2:
            continue
        reference = float(np.median(moved)) if len(moved) >= min_units else float(moved.min())
        if float(moved.max()) > factor * reference:
            return index
    return None


def chance_floor(predictions: Optional[np.ndarray], labels: Optional[np.ndarray]) -> Optional[float]:
    """The accuracy that predictions *unrelated* to the labels reach by chance, plus two standard errors.

    Chance agreement is ``sum_c P(predicted c) * P(label c)`` (as in Cohen's kappa): a constant answer, random
    weights or an untrained model reach it, a model that learnt anything beats it. Two standard errors of an
    accuracy on ``len(labels)`` samples keep garbage below the floor about 39 times in 40.
    """
    if predictions is None or labels is None or len(labels) == 0 or len(predictions) != len(labels):
        return None
    classes, label_counts = np.unique(np.asarray(labels), return_counts=True)
    predictions = np.asarray(predictions)
    chance = float(sum(np.mean(predictions == c) * n / len(labels) for c, n in zip(classes, label_counts)))
    return chance + 2 * math.sqrt(max(chance * (1 - chance), 1e-12) / len(labels))


def trivial_score(labels: Optional[np.ndarray]) -> Optional[float]:
    """Accuracy of always answering the most common label: what a model must beat to have learnt anything."""
    if labels is None or len(labels) == 0:
        return None
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / len(labels))


__all__ = ["Evaluation", "chance_floor", "class_losses", "class_shifts", "lopsided_step", "output_layer_steps",
           "parameter_steps", "singled_out", "trivial_score"]
