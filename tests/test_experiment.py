"""The driver: failures as data, held-model scores, hooks, determinism."""
import pytest

from colearn import Callback, Experiment, ExperimentResults, ProtocolConfig, TallyRule, run_experiment
from colearn.ml_interface import ErrorCodes, TrainingSummary, Weights
from tests.learners import FixedVoter, GarbageVoter, PlusOneLearner, RaisingLearner


def test_all_accept_and_held_scores_follow_the_model():
    learners = [PlusOneLearner() for _ in range(3)]
    results = run_experiment(learners, 4)
    assert [r.proposer for r in results.rounds] == [0, 1, 2, 0]
    assert all(r.accepted for r in results.rounds)
    assert [learner.value for learner in learners] == [4, 4, 4]
    assert results.rounds[-1].held_test_scores == [4.0, 4.0, 4.0]
    assert results.initial_test_scores == [0.0, 0.0, 0.0]
    assert results.rounds[0].votes == [None, True, True]  # the proposer never votes


def test_rejected_round_records_the_models_held_not_the_proposal():
    learners = [PlusOneLearner(limit=1) for _ in range(3)]
    results = run_experiment(learners, 3)
    assert [r.accepted for r in results.rounds] == [True, False, False]
    rejected = results.rounds[1]
    assert rejected.proposer == 1 and rejected.proposal_test_scores == [2.0, None, 2.0]
    assert rejected.held_test_scores == [1.0, 1.0, 1.0]
    assert [learner.value for learner in learners] == [1, 1, 1]


def test_failing_proposer_is_a_recorded_rejected_round():
    learners = [RaisingLearner(("propose",)), PlusOneLearner(), PlusOneLearner()]
    results = run_experiment(learners, 3)
    assert results.rounds[0].accepted is False
    assert "proposer exploded" in results.rounds[0].proposer_error
    assert results.rounds[1].accepted and results.rounds[2].accepted


def test_failing_and_garbage_voters_abstain_with_their_error():
    learners = [PlusOneLearner(), RaisingLearner(("test",)), GarbageVoter(), PlusOneLearner()]
    record = Experiment(learners).run_round()
    assert record.votes == [None, None, None, True]
    assert "voter exploded" in record.vote_errors[1]
    assert "expected ProposedWeights" in record.vote_errors[2]
    assert (record.approvals, record.rejections, record.abstentions) == (1, 0, 2)
    assert not record.accepted  # 1 valid vote of 3 possible is below the default quorum (1/2)
    lenient = Experiment([PlusOneLearner(), RaisingLearner(("test",)), GarbageVoter(), PlusOneLearner()],
                         ProtocolConfig(tally_rule=TallyRule.FRACTION_OF_VOTERS)).run_round()
    assert lenient.accepted


def test_all_voters_abstaining_rejects():
    learners = [PlusOneLearner(), FixedVoter(None), FixedVoter(None)]
    record = Experiment(learners, ProtocolConfig(vote_threshold=0.0)).run_round()
    assert record.accepted is False and record.abstentions == 2


@pytest.mark.parametrize("threshold, accepted", [(0.0, True), (0.5, True), (0.51, False), (1.0, False)])
def test_threshold_edges(threshold, accepted):
    learners = [PlusOneLearner(), FixedVoter(True), FixedVoter(False)]
    assert Experiment(learners, ProtocolConfig(vote_threshold=threshold)).run_round().accepted is accepted


def test_accept_does_not_evaluate_again_and_proposer_is_scored_once():
    learners = [PlusOneLearner() for _ in range(3)]
    experiment = Experiment(learners)
    experiment.evaluate_initial()
    before = [learner.test_calls for learner in learners]
    experiment.run_round()
    # voters test once each; the proposer scores its accepted proposal once; nobody re-evaluates on accept
    assert [learner.test_calls - b for learner, b in zip(learners, before)] == [1, 1, 1]
    assert all(learner.accept_calls == 1 for learner in learners)


def test_without_evaluate_proposer_its_held_score_is_unknown():
    learners = [PlusOneLearner() for _ in range(3)]
    record = Experiment(learners, ProtocolConfig(evaluate_proposer=False)).run_round()
    assert record.held_test_scores == [None, 1.0, 1.0]
    assert learners[0].test_calls == 1  # the initial evaluation only


class BudgetLearner(PlusOneLearner):
    def __init__(self, proposals: int):
        super().__init__()
        self.left = proposals

    def mli_propose_weights(self) -> Weights:
        if self.left == 0:
            return Weights(weights=self.value, training_summary=TrainingSummary(
                error_code=ErrorCodes.DP_BUDGET_EXCEEDED))
        self.left -= 1
        return super().mli_propose_weights()


def test_budget_exceeded_is_recorded_and_the_learner_stops_proposing():
    learners = [BudgetLearner(1), PlusOneLearner(), PlusOneLearner()]
    results = run_experiment(learners, 7)
    assert results.rounds[3].proposer_error == "DP_BUDGET_EXCEEDED"
    assert 0 not in [r.proposer for r in results.rounds[4:]]


def test_hooks_are_called_in_order():
    events = []

    class Recorder(Callback):
        def on_experiment_start(self, experiment):
            events.append("start")

        def on_round_start(self, round_index, proposer):
            events.append(("round", round_index, proposer))

        def on_experiment_end(self, results):
            events.append("end")

    run_experiment([PlusOneLearner(), PlusOneLearner()], 2,
                   hooks=[Recorder(), lambda record: events.append(("done", record.round_index))])
    assert events == ["start", ("round", 0, 0), ("done", 0), ("round", 1, 1), ("done", 1), "end"]


def test_bad_experiments_fail_before_running():
    with pytest.raises(ValueError, match="at least one learner"):
        Experiment([])
    learner = PlusOneLearner()
    with pytest.raises(ValueError, match="n_rounds"):
        Experiment([learner, PlusOneLearner()]).run(-1)
    assert learner.test_calls == 0


def test_seeded_random_selection_is_deterministic_and_results_round_trip():
    def run_once() -> ExperimentResults:
        return run_experiment([PlusOneLearner(limit=5) for _ in range(4)], 8,
                              ProtocolConfig(selector="random", seed=3))

    first, second = run_once(), run_once()
    assert first.to_json(include_timings=False) == second.to_json(include_timings=False)
    assert ExperimentResults.from_json(first.to_json()) == first
    assert len({r.proposer for r in first.rounds}) > 1


def test_results_flatten_to_csv_and_dataframe():
    results = run_experiment([PlusOneLearner(limit=2) for _ in range(3)], 3)
    frame = results.to_dataframe()
    assert len(frame) == 3 * (1 + 3)  # round -1 (initial) and rounds 0..2, one row per learner
    last = frame[frame["round"] == 2].set_index("learner")
    assert list(last["held_test_score"]) == [2.0, 2.0, 2.0] and not last["accepted"].any()
    assert results.to_csv().splitlines()[0].startswith("round,learner,proposer,accepted,vote")
    assert results.rounds[0].proposal_bytes > 0 and results.rounds[0].times.total >= results.rounds[0].times.vote


class DpLearner(PlusOneLearner):
    def mli_propose_weights(self) -> Weights:
        from colearn.ml_interface import DiffPrivBudget

        budget = DiffPrivBudget(target_epsilon=5.0, target_delta=1e-5, consumed_epsilon=1.25 * (self.value + 1),
                                consumed_delta=1e-5)
        return Weights(weights=self.value + 1, training_summary=TrainingSummary(dp_budget=budget))


def test_dp_budgets_are_recorded_and_shown_in_the_summary():
    from rich.console import Console

    from colearn.progress import summary_table

    results = run_experiment([DpLearner() for _ in range(3)], 2)
    assert results.rounds[-1].dp_budgets[1].consumed_epsilon == 2.5
    assert results.rounds[-1].dp_budgets[2] is None  # learner 2 has not proposed yet
    console = Console(record=True, width=120)
    console.print(summary_table(results))
    text = console.export_text()
    assert "DP ε spent" in text and "2.50 / 5" in text


def test_held_scores_a_backend_reports_unknown_are_recorded_as_unknown():
    from colearn.backends.local import LocalBackend

    class Forgetful(LocalBackend):
        def unknown_held(self):
            return {1}

    record = Experiment(Forgetful([PlusOneLearner(), PlusOneLearner(), PlusOneLearner()])).run_round()
    assert record.held_test_scores[1] is None and record.held_test_scores[0] is not None
