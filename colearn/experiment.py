"""The driver: runs the protocol's rounds through a backend and records them.

Data flows one way per round: the proposer's weights go to the voters, their verdicts go to the
tally, and the decision goes to every learner. The driver keeps the scores of the model each learner
holds, so a rejected round records the learners' unchanged scores without re-evaluating anything.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from colearn.backends.base import Backend, Failure
from colearn.backends.local import LocalBackend
from colearn.encoding import WeightsEncodeError, encoded_size, weights_digest
from colearn.hooks import Callback, CallbackList
from colearn.ml_interface import DiffPrivBudget, MachineLearningInterface, Weights
from colearn.proposals import freeze, nonfinite_reason
from colearn.protocol import (ProtocolConfig, RoundOutcome, VoteVerdict, interpret_vote, is_budget_exhausted,
                              make_selector, make_strategy, proposal_refusal, select_proposer, validate_experiment)
from colearn.results import ExperimentResults, PhaseTimes, RoundRecord, collect_versions, describe_metric

HookLike = Union[Callback, Callable[[RoundRecord], Any]]


def _as_backend(learners: Union[Backend, Sequence[MachineLearningInterface]]) -> Backend:
    if isinstance(learners, Backend):
        return learners
    return LocalBackend(list(learners))


class Experiment:
    """Runs collective-learning rounds over learners reached through a backend.

    >>> results = Experiment(learners, ProtocolConfig(vote_threshold=0.5)).run(20)   # doctest: +SKIP

    ``learners`` is a list of MLIs (run in this process) or any :class:`~colearn.backends.Backend`.
    ``hooks`` are :class:`~colearn.hooks.Callback` objects or plain functions of a :class:`RoundRecord`.
    """

    def __init__(self, learners: Union[Backend, Sequence[MachineLearningInterface]],
                 config: Optional[ProtocolConfig] = None, *, hooks: Iterable[HookLike] = (),
                 run_config: Optional[Dict[str, Any]] = None, measure_size: bool = True):
        self.backend = _as_backend(learners)
        self.config = config or ProtocolConfig()
        validate_experiment(self.backend.n_learners, 0)
        self.hooks = CallbackList(hooks)
        self.selector = make_selector(self.config)
        self.strategy = make_strategy(self.config)
        self.history: List[RoundOutcome] = []
        self.measure_size = measure_size
        n = self.backend.n_learners
        self.held_vote_scores: List[Optional[float]] = [None] * n
        self.held_test_scores: List[Optional[float]] = [None] * n
        self.dp_budgets: List[Optional[DiffPrivBudget]] = [None] * n
        self.exhausted: set[int] = set()
        self.results = ExperimentResults(
            n_learners=n, backend=self.backend.name, seed=self.config.seed,
            config={**(run_config or {}),
                    "protocol": {**self.config.model_dump(mode="json", exclude={"selector", "strategy"}),
                                 "strategy": self.strategy.name},
                    "selector": self.config.selector if isinstance(self.config.selector, str) else "custom"},
            versions=collect_versions())
        self.results.metric, self.results.higher_is_better = describe_metric(self.backend)
        self._initialised = False

    @property
    def n_learners(self) -> int:
        return self.backend.n_learners

    def evaluate_initial(self) -> None:
        """Score every learner's held model once, so that rounds can record unchanged scores for free."""
        for i in range(self.n_learners):
            current = self.backend.current_weights(i)
            if isinstance(current, Failure):
                continue
            response = self.backend.test(current, [i])[i]
            verdict = interpret_vote(response)
            self.held_vote_scores[i], self.held_test_scores[i] = verdict.vote_score, verdict.test_score
            if self.results.metric is None and isinstance(getattr(response, "criterion", None), str):
                self.results.metric, self.results.higher_is_better = describe_metric([response])  # remote learners
        self.results.initial_vote_scores = list(self.held_vote_scores)
        self.results.initial_test_scores = list(self.held_test_scores)
        self._initialised = True

    def restore(self, results: ExperimentResults, exhausted: Iterable[int] = ()) -> None:
        """Continue from ``results`` of an interrupted run of this experiment (learners already hold what they
        held then): the rounds so far, held scores, DP budgets, spent budgets and the strategy's history."""
        last = results.rounds[-1] if results.rounds else None
        self.results.metric, self.results.higher_is_better = results.metric, results.higher_is_better
        self.results.initial_vote_scores = list(results.initial_vote_scores)
        self.results.initial_test_scores = list(results.initial_test_scores)
        self.results.rounds = list(results.rounds)
        self.held_vote_scores = list(last.held_vote_scores if last else results.initial_vote_scores)
        self.held_test_scores = list(last.held_test_scores if last else results.initial_test_scores)
        if last is not None and last.dp_budgets:
            self.dp_budgets = list(last.dp_budgets)
        self.exhausted = set(exhausted)
        self.history = [RoundOutcome(r.round_index, r.proposer, r.accepted, {
            i: VoteVerdict(r.votes[i], r.vote_errors[i], r.proposal_vote_scores[i], r.proposal_test_scores[i])
            for i in range(len(r.votes)) if i != r.proposer and r.proposer is not None and r.proposer_error is None},
            r.proposer_error) for r in results.rounds]
        self._initialised = True  # the initial evaluation is in the results: not repeated

    def run(self, n_rounds: int) -> ExperimentResults:
        """Run ``n_rounds`` rounds (after the initial evaluation, the first time) and return the results."""
        validate_experiment(self.n_learners, n_rounds)
        if not self._initialised:
            self.hooks.on_experiment_start(self)
            self.evaluate_initial()
        for _ in range(n_rounds):
            self.run_round()
        self.hooks.on_experiment_end(self.results)
        return self.results

    def run_round(self, round_index: Optional[int] = None) -> RoundRecord:
        """Run a round: select, propose, vote, tally, accept; record and return it.

        ``round_index`` defaults to the number of rounds run so far; it drives proposer selection.
        """
        if not self._initialised:
            self.evaluate_initial()
        round_index = len(self.results.rounds) if round_index is None else round_index
        n = self.n_learners
        candidates = [i for i in range(n) if i not in self.exhausted]
        eligible = list(self.strategy.eligible_proposers(round_index, n, candidates, self.history)) if candidates else []
        record = RoundRecord(round_index=round_index, proposer=None, accepted=False, votes=[None] * n,
                             vote_errors=[None] * n, proposal_vote_scores=[None] * n,
                             proposal_test_scores=[None] * n, held_vote_scores=list(self.held_vote_scores),
                             held_test_scores=list(self.held_test_scores), accept_errors=[None] * n)
        started = time.perf_counter()
        if not eligible:
            record.proposer_error = ("no learner is eligible to propose (all DP budgets are spent)" if not candidates
                                     else f"strategy {self.strategy.name!r} left no learner eligible to propose")
            return self._finish(record, started)
        proposer = select_proposer(self.selector, round_index, n, eligible)
        record.proposer = proposer
        self.hooks.on_round_start(round_index, proposer)

        answer = self.backend.propose(proposer)
        record.times.propose = time.perf_counter() - started
        self._note_budget(proposer, answer)
        proposal, refusal = self._admit(answer, record)
        if proposal is None:
            record.proposer_error = record.proposer_error or refusal
            if is_budget_exhausted(answer):
                self.exhausted.add(proposer)
            return self._finish(record, started)
        record.proposal_digest = self._digest_of(proposal)

        vote_started = time.perf_counter()
        voters = [i for i in range(n) if i != proposer]
        responses = self.backend.test(proposal, voters)
        verdicts = {i: interpret_vote(responses.get(i, Failure(i, "no answer", "invalid"))) for i in voters}
        for i, verdict in verdicts.items():
            record.votes[i], record.vote_errors[i] = verdict.vote, verdict.error
            record.proposal_vote_scores[i], record.proposal_test_scores[i] = verdict.vote_score, verdict.test_score
        decision = self.strategy.decide(proposer, verdicts, n, self.history)
        record.approvals, record.rejections, record.abstentions = (
            decision.approvals, decision.rejections, decision.abstentions)
        record.accepted = decision.accepted
        record.decision_reason = decision.reason
        record.excluded_votes = sorted(decision.excluded)
        record.times.vote = time.perf_counter() - vote_started

        if decision.accepted:
            accept_started = time.perf_counter()
            self._accept(proposal, proposer, verdicts, record)
            record.times.accept = time.perf_counter() - accept_started
            self.hooks.on_weights_accepted(round_index, proposal)
        return self._finish(record, started, verdicts)

    def _admit(self, answer: Any, record: RoundRecord) -> "tuple[Optional[Weights], Optional[str]]":
        """The proposal as everyone will see it (measured, frozen, finite), or why there is none this round."""
        refusal = proposal_refusal(answer)
        if refusal is not None:
            return None, refusal
        record.proposal_bytes = self._size_of(answer, record)  # from shapes and dtypes, before any copy
        if record.proposer_error is not None:  # weights that cannot even be measured: a refused round
            return None, record.proposer_error
        try:
            proposal = freeze(answer)
        except Exception as exc:  # e.g. a broadcast view too large to copy: a refused round, not a crash
            return None, f"proposal cannot be copied: {type(exc).__name__}: {exc}"
        nonfinite = nonfinite_reason(proposal.weights)
        if nonfinite is not None:
            return None, f"proposal refused before the vote: {nonfinite}"
        return proposal, None

    @staticmethod
    def _digest_of(proposal: Weights) -> Optional[str]:
        try:
            return weights_digest(proposal.weights)
        except WeightsEncodeError:  # e.g. in-process tensors: no typed fingerprint
            return None

    def _accept(self, proposal: Weights, proposer: int, verdicts: Dict[int, Any], record: RoundRecord) -> None:
        outcomes = self.backend.accept(proposal, list(range(self.n_learners)))
        for i in range(self.n_learners):
            outcome = outcomes.get(i)
            if isinstance(outcome, Failure):
                record.accept_errors[i] = outcome.error
                self.held_vote_scores[i] = self.held_test_scores[i] = None  # what it holds is unknown now
            elif i in verdicts:
                self.held_vote_scores[i] = verdicts[i].vote_score
                self.held_test_scores[i] = verdicts[i].test_score
        if self.config.evaluate_proposer and record.accept_errors[proposer] is None:
            own = interpret_vote(self.backend.test(proposal, [proposer])[proposer])
            self.held_vote_scores[proposer], self.held_test_scores[proposer] = own.vote_score, own.test_score
        elif record.accept_errors[proposer] is None:
            self.held_vote_scores[proposer] = self.held_test_scores[proposer] = None

    def _note_budget(self, proposer: int, proposal: Any) -> None:
        summary = getattr(proposal, "training_summary", None)
        if summary is not None and summary.dp_budget is not None:
            self.dp_budgets[proposer] = summary.dp_budget

    def _size_of(self, proposal: Weights, record: RoundRecord) -> Optional[int]:
        """Encoded size from dtypes and shapes (nothing copied). Weights with no typed encoding (0.2.x-style
        objects, fine in process) have no size; any other failure refuses the round (``proposer_error``)."""
        if not self.measure_size:
            return None
        try:
            return encoded_size(proposal.weights)
        except WeightsEncodeError:
            return None
        except Exception as exc:  # hostile weights (e.g. a container that raises): refuse, never crash
            record.proposer_error = f"the proposal cannot be measured: {type(exc).__name__}: {exc}"
            return None

    def _finish(self, record: RoundRecord, started: float,
                verdicts: Optional[Dict[int, VoteVerdict]] = None) -> RoundRecord:
        self.history.append(RoundOutcome(record.round_index, record.proposer, record.accepted, dict(verdicts or {}),
                                         record.proposer_error))
        record.flagged = sorted(self.strategy.flagged(self.n_learners, self.history))
        for i in self.backend.unknown_held():  # e.g. a learner server restarted with other weights
            self.held_vote_scores[i] = self.held_test_scores[i] = None
        record.held_vote_scores = list(self.held_vote_scores)
        record.held_test_scores = list(self.held_test_scores)
        record.dp_budgets = list(self.dp_budgets)
        record.times.total = time.perf_counter() - started
        self.results.rounds.append(record)
        self.hooks.on_round_end(record)
        return record

    def close(self) -> None:
        self.backend.close()


def run_experiment(learners: Union[Backend, Sequence[MachineLearningInterface]], n_rounds: int,
                   config: Optional[ProtocolConfig] = None, *, hooks: Iterable[HookLike] = (),
                   run_config: Optional[Dict[str, Any]] = None) -> ExperimentResults:
    """One call: build an :class:`Experiment`, run ``n_rounds`` and return its results."""
    return Experiment(learners, config, hooks=hooks, run_config=run_config).run(n_rounds)


__all__ = ["Experiment", "run_experiment", "PhaseTimes"]
