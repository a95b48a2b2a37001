"""colearn 0.2.x's standalone driver (``run_one_round``, ``run``): a thin shim over :class:`colearn.Experiment`.

Semantics kept from colearn 0.2.8: the proposer of round ``r`` is learner ``r % n``; it never votes (its
entry's ``vote`` is ``None``); the round is accepted when ``approvals >= (n - 1) * vote_threshold``
(:attr:`TallyRule.LEGACY`: an abstention counts against); on acceptance every learner accepts the
proposed weights. The rounds themselves are run by :class:`~colearn.experiment.Experiment`.

Differences from 0.2.8, on purpose:

- The proposer does not test its own proposal to vote. Its entry in the returned list carries the
  scores of the model it holds after the round: the proposal's (scored once, by the proposer, when
  accepted) or its unchanged previous scores when rejected.
- A voter that raises or answers garbage does not crash the round: it abstains. Its entry is a
  ``ProposedWeights`` with ``vote=None``, NaN scores and ``evaluation_results={"error": ...}``.
  A proposer that raises gives a rejected round: every entry has ``vote=None``, the learners' held
  scores, and the proposer's entry has the error in ``evaluation_results``.

0.2.x's driver kept no state; this one keeps the held models' scores, so that a rejected round
costs no evaluation. There is one :class:`Experiment` per list of learners (the same learner objects
in the same order), held through weak references, so it goes away with the learners.
``colearn.training.set_equal_weights`` and ``initial_result`` start a fresh one. A model changed
behind colearn's back (e.g. a direct ``mli_accept_weights`` call) IS detected before the next round
by comparing a digest of each learner's current weights, and that learner is re-evaluated; this works
for weights made of arrays, numbers, bytes, lists and dicts. Weights of other types (e.g. a whole
estimator object) cannot be digested: such a change is not detected, so call :func:`forget` after it.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

from colearn.backends.base import Outcome
from colearn.backends.local import LocalBackend
from colearn.encoding import weights_digest
from colearn.experiment import Experiment
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn.protocol import ProtocolConfig, TallyRule, interpret_vote, make_strategy
from colearn.results import ExperimentResults, RoundRecord


class _CapturingBackend(LocalBackend):
    """The local backend, remembering the last proposal and the raw answers to it (0.2.x returns them)."""

    name = "local-0.2.x"

    def __init__(self, learners: Sequence[MachineLearningInterface]):
        super().__init__(learners)
        self.last_proposal: Optional[Outcome[Weights]] = None
        self.last_responses: Dict[int, Outcome[ProposedWeights]] = {}
        self._vote_pending = False

    def propose(self, learner: int) -> Outcome[Weights]:
        self.last_proposal = super().propose(learner)
        self._vote_pending = True
        return self.last_proposal

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        responses = super().test(weights, learners)
        if self._vote_pending:  # the first test after a proposal is the vote on it (a frozen copy of it)
            self._vote_pending = False
            self.last_responses.update(responses)
        return responses


class _Session:
    """One Experiment over one list of learners, plus the digests used to notice changed models."""

    def __init__(self, learners: List[MachineLearningInterface], vote_threshold: float, weak: bool):
        handles = [weakref.proxy(learner) for learner in learners] if weak else learners
        self.backend = _CapturingBackend(handles)
        self.experiment = Experiment(self.backend, _legacy_config(vote_threshold),
                                     run_config={"driver": "colearn.standalone_driver (0.2.x compatibility)"})
        self.current: List[Outcome[Weights]] = []
        self.digests: List[Optional[str]] = []
        self.initialised = False
        self.refs: Tuple[weakref.ref, ...] = ()

    def set_threshold(self, vote_threshold: float) -> None:
        if vote_threshold != self.experiment.config.vote_threshold:
            self.experiment.config = _legacy_config(vote_threshold)
            self.experiment.strategy = make_strategy(self.experiment.config)

    def evaluate_initial(self) -> None:
        self.experiment.evaluate_initial()
        self.snapshot()
        self.initialised = True

    def snapshot(self) -> None:
        """Remember each learner's current weights and their digest."""
        self.current = [self.backend.current_weights(i) for i in range(self.backend.n_learners)]
        self.digests = [_digest(w) for w in self.current]

    def refresh_changed(self) -> List[int]:
        """Re-evaluate the learners whose model changed since the last round; return their indices."""
        before = self.digests
        self.snapshot()
        changed = [i for i, (old, new) in enumerate(zip(before, self.digests))
                   if old is not None and new is not None and old != new]
        for i in changed:
            verdict = interpret_vote(self.backend.test(self.current[i], [i])[i])
            self.experiment.held_vote_scores[i] = verdict.vote_score
            self.experiment.held_test_scores[i] = verdict.test_score
        return changed


def _legacy_config(vote_threshold: float) -> ProtocolConfig:
    return ProtocolConfig(vote_threshold=vote_threshold, selector="round_robin", tally_rule=TallyRule.LEGACY,
                          evaluate_proposer=True)


def _digest(weights: Outcome[Weights]) -> Optional[str]:
    if not isinstance(weights, Weights):
        return None
    try:
        return weights_digest(weights.weights)
    except (TypeError, ValueError):  # WeightsEncodeError is a TypeError: weights we cannot fingerprint
        return None


_SESSIONS: Dict[Tuple[int, ...], _Session] = {}


def _session(learners: Sequence[MachineLearningInterface], vote_threshold: float = 0.5,
             fresh: bool = False) -> _Session:
    learners = list(learners)
    if not learners:
        raise ValueError("learners: need at least one learner, got none")
    key = tuple(id(learner) for learner in learners)
    session = _SESSIONS.get(key)
    if (session is not None and not fresh and len(session.refs) == len(learners)
            and all(ref() is learner for ref, learner in zip(session.refs, learners))):
        session.set_threshold(vote_threshold)
        return session
    _SESSIONS.pop(key, None)
    try:
        session = _Session(learners, vote_threshold, weak=True)

        def drop(_: Any, key: Tuple[int, ...] = key, token: int = id(session)) -> None:
            if key in _SESSIONS and id(_SESSIONS[key]) == token:
                del _SESSIONS[key]

        session.refs = tuple(weakref.ref(learner, drop) for learner in learners)
    except TypeError:  # a learner that cannot be weakly referenced: a one-off session, re-evaluated each call
        return _Session(learners, vote_threshold, weak=False)
    _SESSIONS[key] = session
    return session


def forget(learners: Sequence[MachineLearningInterface]) -> None:
    """Drop what the driver remembers about these learners (their held scores); the next round re-evaluates."""
    _SESSIONS.pop(tuple(id(learner) for learner in learners), None)


def evaluate_initial(learners: Sequence[MachineLearningInterface], vote_threshold: float = 0.5
                     ) -> ExperimentResults:
    """Start a fresh record for these learners and score each one's held model once (0.2.x ``initial_result``)."""
    session = _session(learners, vote_threshold, fresh=True)
    session.evaluate_initial()
    return session.experiment.results


def experiment_results(learners: Sequence[MachineLearningInterface]) -> Optional[ExperimentResults]:
    """The new-style results of the rounds run through this module on these learners (None if none)."""
    session = _SESSIONS.get(tuple(id(learner) for learner in learners))
    return session.experiment.results if session is not None else None


def run_round_record(round_index: int, learners: Sequence[MachineLearningInterface], vote_threshold: float = 0.5
                     ) -> Tuple[RoundRecord, List[ProposedWeights], List[Outcome[Weights]]]:
    """Run one 0.2.x round; return the new-style record, the 0.2.x list, and each learner's current weights."""
    session = _session(learners, vote_threshold)
    if session.initialised:
        session.refresh_changed()
    else:
        session.evaluate_initial()
    session.backend.last_proposal, session.backend.last_responses = None, {}
    record = session.experiment.run_round(round_index)
    if record.accepted:
        session.snapshot()
    return record, _proposed_weights_list(record, session), list(session.current)


def _proposed_weights_list(record: RoundRecord, session: _Session) -> List[ProposedWeights]:
    proposal = session.backend.last_proposal
    weights = proposal if isinstance(proposal, Weights) else Weights(weights=None)
    entries: List[ProposedWeights] = []
    for i in range(session.backend.n_learners):
        response = session.backend.last_responses.get(i)
        if i != record.proposer and isinstance(response, ProposedWeights):
            entries.append(response if response.vote is record.votes[i]
                           else response.model_copy(update={"vote": record.votes[i]}))
            continue
        if i == record.proposer or record.proposer is None or record.proposer_error is not None:
            vote_score, test_score = record.held_vote_scores[i], record.held_test_scores[i]
            error = record.proposer_error if i == record.proposer else None
        else:  # a voter that failed
            vote_score = test_score = None
            error = record.vote_errors[i] or "no valid answer"
        entries.append(ProposedWeights(weights=weights, vote=None, vote_score=_nan(vote_score),
                                       test_score=_nan(test_score),
                                       evaluation_results={"error": error} if error else None))
    return entries


def _nan(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


def run_one_round(round_index: int, learners: Sequence[MachineLearningInterface],
                  vote_threshold: float = 0.5) -> Tuple[List[ProposedWeights], bool]:
    """Run round ``round_index`` (proposer ``round_index % n``); return one ``ProposedWeights`` per learner
    (index = learner, the proposer's with ``vote=None``) and whether the proposal was accepted."""
    record, entries, _ = run_round_record(round_index, learners, vote_threshold)
    return entries, record.accepted


def run(n_rounds: int, learners: Sequence[MachineLearningInterface], vote_threshold: float = 0.5
        ) -> Optional[ExperimentResults]:
    """Run rounds ``0 .. n_rounds - 1``; return the new-style results of these learners' rounds so far."""
    if not isinstance(n_rounds, int) or n_rounds < 0:
        raise ValueError(f"n_rounds must be a non-negative integer, got {n_rounds!r}")
    for round_index in range(n_rounds):
        run_one_round(round_index, learners, vote_threshold)
    return experiment_results(learners)


__all__ = ["evaluate_initial", "experiment_results", "forget", "run", "run_one_round", "run_round_record"]
