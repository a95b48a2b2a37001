"""How a learner votes: rules that see more than one number, chosen per learner in one place.

A voter scores a proposal on its private vote set and compares it with what it holds. A rule sees both
:class:`Evaluation` s (the score and, where the learner provides them, its predictions and the labels) and the
voter's :class:`VoteMemory` (the best score it has held, a fixed reference), so that it can refuse what one
number hides: a proposal that keeps accuracy but erases one class, or a chain of small degradations that each
become the next baseline.

Built-in rules (``make_vote_rule(name)``):

- ``"not-worse"``: approve when the proposal scores at least as well as the held model (ties approve);
- ``"strict"``: colearn 0.2.x's rule: approve only a strictly better score (ties reject);
- ``"margin"``: approve when it beats the held model by ``margin`` (negative: a tolerance);
- ``"best"``: compare with the best score held so far (minus ``tolerance``), a reference that does not drift;
- ``"per-class"``: BaFFLe-style: also reject when any class loses more than ``max_class_loss`` (or, if larger,
  ``max_class_fraction`` of the voter's samples of that class) of its vote-set samples that the held model got
  right (net of those it newly gets right);
- ``"chance"``: ``robust`` without the per-class check (the default of colearn's PyTorch and Keras learners);
- ``"robust"`` (colearn's default): ``per-class`` (two samples a class, or a quarter of them) plus no lopsided
  step (no output unit moved 100 times more than the median unit of its layer) plus "beats chance" (a proposal whose
  predictions agree with the labels no more than unrelated guesses would is garbage, even when the held model is
  untrained) plus a bounded loss of a hidden training state (averaged SGD's iterate);
- ``"robust-margins"``: ``robust`` plus, where the learner reports margins, no class singled out: a class whose
  samples' margins the proposal lowers far more than the proposals this voter has seen lowered them (a targeted
  bias cut) is refused.

Everything here is pure: the same evaluations and memory give the same vote on every backend.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from colearn.vote_evidence import (Evaluation, chance_floor, class_losses, class_shifts, lopsided_step,
                                   output_layer_steps, parameter_steps, singled_out, trivial_score)


SHIFT_HISTORY = 64
NEURAL_NETWORK_STEP_FACTOR = 30.0  # the "chance" rule's step check (output layers; see chance_rule)
"""Per class, how many of the latest proposals' margin shifts a voter remembers (see :func:`class_shifts`)."""


@dataclass
class VoteMemory:
    """What a voter remembers between rounds: the best score it has held, an optional fixed reference, and per
    class the margin shifts of the latest proposals it scored (what an ordinary proposal does to each class)."""

    best: Optional[float] = None
    reference: Optional[float] = None
    shifts: Dict[Any, List[float]] = field(default_factory=dict)

    def scored(self, shifts: Mapping[Any, float]) -> None:
        """Remember the per-class margin shifts of a proposal this voter scored."""
        for label, shift in shifts.items():
            history = self.shifts.setdefault(label, [])
            history.append(shift)
            del history[:-SHIFT_HISTORY]

    def held(self, score: Optional[float], minimise: bool = False) -> None:
        """Note the score of a model the voter now holds."""
        if score is None or not math.isfinite(score):
            return
        if self.best is None or (score < self.best if minimise else score > self.best):
            self.best = score


def _at_least(new: float, reference: float, minimise: bool) -> bool:
    return new <= reference if minimise else new >= reference


def _shifted(reference: float, amount: float, minimise: bool) -> float:
    """``reference`` moved by ``amount`` in the better direction (a negative amount is a tolerance)."""
    return reference - amount if minimise else reference + amount


class VoteRule(abc.ABC):
    """A voter's decision from the proposal's and the held model's evaluations and its memory."""

    name = "custom"

    @abc.abstractmethod
    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        """True to approve. ``held`` is None when the voter holds nothing it could score."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class NotWorse(VoteRule):
    """Approve a proposal that scores at least as well as the held model (ties approve)."""

    name = "not-worse"

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        return held is None or _at_least(proposal.score, held.score, minimise)


class Strict(VoteRule):
    """colearn 0.2.x: approve only a strictly better score (a tie rejects)."""

    name = "strict"

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        if held is None:
            return True
        return proposal.score < held.score if minimise else proposal.score > held.score


@dataclass
class Margin(VoteRule):
    """Approve when the proposal beats the held model by ``margin`` (a negative margin tolerates a loss)."""

    margin: float = 0.0
    name: str = field(default="margin", init=False)

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        return held is None or _at_least(proposal.score, _shifted(held.score, self.margin, minimise), minimise)


@dataclass
class BestReference(VoteRule):
    """Approve when the proposal is not worse than the held model *and* within ``tolerance`` of the best score
    this voter has held (so accepted small losses cannot pile up), and not worse than ``memory.reference``."""

    tolerance: float = 0.0
    name: str = field(default="best", init=False)

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        if held is not None and not _at_least(proposal.score, held.score, minimise):
            return False
        if memory.best is not None and not _at_least(proposal.score, _shifted(memory.best, -self.tolerance,
                                                                              minimise), minimise):
            return False
        return memory.reference is None or _at_least(proposal.score, memory.reference, minimise)


@dataclass
class PerClass(VoteRule):
    """``base``'s vote, and no class may lose more than ``max_class_loss`` of its vote-set samples (net) against
    the held model: a proposal that trades one class for the others is refused even when accuracy holds."""

    max_class_loss: int = 1
    base: VoteRule = field(default_factory=NotWorse)
    paid: bool = False
    max_class_fraction: float = 0.0
    name: str = field(default="per-class", init=False)

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        if not self.base.vote(proposal, held, memory, minimise):
            return False
        if held is None:
            return True
        losses = class_losses(proposal, held)
        if not losses:
            return True
        counts = dict(zip(*np.unique(np.asarray(proposal.labels), return_counts=True)))
        if any(loss > max(self.max_class_loss, self.max_class_fraction * counts.get(label, 0))
               for label, loss in losses.items()):
            return False
        if self.paid:  # samples a class loses must be paid for by at least as many net gains overall
            lost = sum(v for v in losses.values() if v > 0)
            return lost == 0 or -sum(losses.values()) >= lost
        return True


@dataclass
class Robust(VoteRule):
    """colearn's default: :class:`PerClass` over ``base``; an accuracy-like score must beat chance (the
    agreement of predictions unrelated to the labels, plus two standard errors: :func:`chance_floor`; without
    predictions, always answering the vote set's most common label), so that a proposal that learnt nothing is
    refused in round 0 too, when the held model has learnt nothing either;
    and a hidden training state (:attr:`Evaluation.hidden`) may not lose more than ``hidden_tolerance``;
    where the learner reports parameter steps, no output unit may move more than ``step_factor`` times the median
    unit of its array (:func:`lopsided_step`; ``None`` turns that off); and, with ``shift_spread`` set (the ``"robust-margins"`` rule) and where the learner reports margins, no class
    may be singled out (:func:`singled_out` with ``shift_spread`` and ``shift_floor``)."""

    max_class_loss: Optional[int] = 2
    max_class_fraction: float = 0.25
    over_trivial: float = 0.0
    hidden_tolerance: float = 0.2
    shift_spread: Optional[float] = None
    shift_floor: float = 0.05
    step_factor: Optional[float] = 100.0
    paid: bool = False
    base: VoteRule = field(default_factory=NotWorse)
    name: str = field(default="robust", init=False)

    def vote(self, proposal: Evaluation, held: Optional[Evaluation], memory: VoteMemory,
             minimise: bool = False) -> bool:
        if not minimise:  # an accuracy-like score must beat chance (a floor that does not depend on the held model)
            floor = chance_floor(proposal.predictions, proposal.labels)
            floor = trivial_score(proposal.labels) if floor is None else floor
            if floor is not None and proposal.score <= floor + self.over_trivial:
                return False
        if held is not None and proposal.hidden is not None and held.hidden is not None and not _at_least(
                proposal.hidden, _shifted(held.hidden, -self.hidden_tolerance, minimise), minimise):
            return False
        if self.step_factor is not None and lopsided_step(proposal.steps, self.step_factor) is not None:
            return False
        if self.shift_spread is not None and singled_out(class_shifts(proposal, held), memory.shifts,
                                                         self.shift_spread, self.shift_floor) is not None:
            return False
        if self.max_class_loss is None:  # no per-class check ("chance")
            return self.base.vote(proposal, held, memory, minimise)
        return PerClass(self.max_class_loss, self.base, self.paid, self.max_class_fraction).vote(
            proposal, held, memory, minimise)


def chance_rule(**params: Any) -> "Robust":
    """``robust`` without the per-class check: not worse than the held model, and better than chance (and a hidden
    state within tolerance), with a tighter step check (``step_factor`` 30). The default of colearn's
    neural-network learners, whose honest proposals move classes more than two samples at a time, and which
    report the steps of their output layer only (:func:`output_layer_steps`: honest torch-mlp and torch-cnn
    proposals never moved an output unit more than 12 times the median one; measured: docs/robustness.md)."""
    params.setdefault("step_factor", NEURAL_NETWORK_STEP_FACTOR)
    rule = Robust(max_class_loss=None, **params)
    rule.name = "chance"
    return rule


def robust_margins_rule(**params: Any) -> "Robust":
    """``robust`` that also refuses a proposal singling out one class (:func:`singled_out`, spread 1.5, floor
    0.05). Opt in: against a targeted class cut it halves the damage on IID splits, and on non-IID splits it
    refuses some honest proposals, which costs up to two points when attackers also vote honest proposals down
    (measured: docs/robustness.md)."""
    params.setdefault("shift_spread", 1.5)
    rule = Robust(**params)
    rule.name = "robust-margins"
    return rule


VOTE_RULES = {"not-worse": NotWorse, "strict": Strict, "margin": Margin, "best": BestReference,
              "per-class": PerClass, "robust": Robust, "chance": chance_rule, "robust-margins": robust_margins_rule}
DEFAULT_VOTE_RULE = "robust"
NEURAL_NETWORK_VOTE_RULE = "chance"  # colearn's PyTorch and Keras factories (see chance_rule)
VoteRuleLike = Union[str, VoteRule, None]


def make_vote_rule(rule: VoteRuleLike = None, **params: Any) -> VoteRule:
    """The rule ``rule`` names (``None``: colearn's default), built with ``params``; a rule object is returned as is."""
    if isinstance(rule, VoteRule):
        if params:
            raise ValueError("vote_rule: parameters go with a rule name, not with a rule object")
        return rule
    name = DEFAULT_VOTE_RULE if rule is None else rule
    if name not in VOTE_RULES:
        raise ValueError(f"vote_rule: unknown rule {name!r}; choose one of {sorted(VOTE_RULES)} or pass a VoteRule")
    try:
        return VOTE_RULES[name](**params)
    except TypeError as exc:
        raise ValueError(f"vote_rule {name!r}: {exc}") from exc


class Voter:
    """One learner's voting: its rule and its memory. Learners call :meth:`vote` and :meth:`adopted`."""

    def __init__(self, rule: VoteRuleLike = None, minimise: bool = False):
        self.rule = make_vote_rule(rule)
        self.minimise = minimise
        self.memory = VoteMemory()

    def vote(self, proposal: Evaluation, held: Optional[Evaluation]) -> bool:
        """The rule's vote on ``proposal``; the proposal's per-class margin shifts join the voter's memory."""
        if not math.isfinite(proposal.score):
            return False
        if held is not None and not math.isfinite(held.score):
            held = None
        vote = bool(self.rule.vote(proposal, held, self.memory, self.minimise))
        self.memory.scored(class_shifts(proposal, held))
        return vote

    def adopted(self, held: Optional[Evaluation]) -> None:
        """The learner now holds a model that scored ``held``."""
        if held is not None:
            self.memory.held(held.score, self.minimise)


__all__ = ["BestReference", "Evaluation", "Margin", "NotWorse", "PerClass", "Robust", "Strict", "VOTE_RULES",
           "VoteMemory", "VoteRule", "Voter", "chance_floor", "chance_rule", "class_losses", "class_shifts",
           "lopsided_step", "make_vote_rule", "output_layer_steps", "parameter_steps", "robust_margins_rule",
           "singled_out", "trivial_score"]
