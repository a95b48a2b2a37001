"""Code written for colearn 0.2.x runs unchanged: its learners, its driver loop, its plot and printed table."""
import copy
import gc
import math

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

# The imports a 0.2.x user writes, exactly.
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn.standalone_driver import run, run_one_round
from colearn.training import (collective_learning_round, individual_training_round, initial_result,
                              set_equal_weights)
from colearn.utils.data import get_data, split_list_into_fractions
from colearn.utils.plot import ColearnPlot
from colearn.utils.results import Results, print_results

from colearn import Experiment, ProtocolConfig, standalone_driver
from colearn.ml_interface import ColearnModel, ModelFormat
from colearn.utils.data import DownloadNotSupportedError, InsufficientDataError
from colearn.utils.plot import is_interactive_backend, legacy_vote_matrix
from colearn.utils.results import Result, from_experiment_results


# ---- learners written as a colearn 0.2.8 user wrote them (only the four 0.2.8 methods) -----------
class IrisForestLearner(MachineLearningInterface):
    """A random forest that grows two more trees per proposal (warm_start)."""

    def __init__(self, train, vote, test, seed):
        self.train_data, self.vote_data, self.test_data = train, vote, test
        self.model = RandomForestClassifier(n_estimators=2, warm_start=True, random_state=seed)
        self.model.fit(*self.train_data)
        self.vote_score = self.model.score(*self.vote_data)

    def mli_propose_weights(self) -> Weights:
        new_model = copy.deepcopy(self.model)
        new_model.n_estimators += 2
        new_model.fit(*self.train_data)
        return Weights(weights=new_model)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        vote_score = weights.weights.score(*self.vote_data)
        test_score = weights.weights.score(*self.test_data)
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=self.vote_score <= vote_score)

    def mli_accept_weights(self, weights: Weights):
        self.model = weights.weights
        self.vote_score = self.model.score(*self.vote_data)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.model)


class PlusOne(MachineLearningInterface):
    """Weights are an integer; a proposal adds one; the score is how close the weights are to ``target``."""

    def __init__(self, target=100, value=0):
        self.target, self.value = target, value
        self.test_calls = 0

    def score(self, value):
        return -abs(self.target - value)

    def mli_propose_weights(self) -> Weights:
        return Weights(weights=self.value + 1)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        self.test_calls += 1
        score = float(self.score(weights.weights))
        return ProposedWeights(weights=weights, vote_score=score, test_score=score,
                               vote=score >= self.score(self.value))

    def mli_accept_weights(self, weights: Weights):
        self.value = weights.weights

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.value)


class Voter(PlusOne):
    """Answers with a fixed vote (None abstains) or raises when ``vote == 'raise'``."""

    def __init__(self, vote):
        super().__init__()
        self.fixed = vote

    def mli_test_weights(self, weights):
        if self.fixed == "raise" and weights.weights != self.value:
            raise RuntimeError("voter broke")
        verdict = super().mli_test_weights(weights)
        if self.fixed != "raise" and weights.weights != self.value:
            verdict.vote = self.fixed
        return verdict


class Slotted(PlusOne):
    """A learner that cannot be weakly referenced."""

    __slots__ = ("target", "value", "test_calls")


# ---- a learner from the later 0.2.x sources: dict scores + criterion, and mli_get_current_model --------
class LaterSourcesLearner(MachineLearningInterface):
    def __init__(self, target):
        self.target = np.asarray(target, dtype=float)
        self.weights = np.zeros_like(self.target)

    def _scores(self, w):
        distance = float(np.linalg.norm(w - self.target))
        return {"neg_distance": -distance, "distance": distance}

    def mli_propose_weights(self) -> Weights:
        return Weights(weights=self.weights + 0.5 * (self.target - self.weights))

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        scores = self._scores(weights.weights)
        current = self._scores(self.weights)
        return ProposedWeights(weights=weights, vote_score=scores, test_score=scores, criterion="neg_distance",
                               vote=scores["neg_distance"] >= current["neg_distance"])

    def mli_accept_weights(self, weights: Weights):
        self.weights = np.array(weights.weights, dtype=float)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.weights.copy())

    def mli_get_current_model(self) -> ColearnModel:
        return ColearnModel(model_format=ModelFormat.WEIGHTS_ONLY, model=self.weights.tolist())


def iris_learners(n_learners=3, seed=0):
    """Split iris among learners the 0.2.x way, with split_list_into_fractions."""
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    learners = []
    for part in split_list_into_fractions(order, [1 / n_learners] * n_learners):
        train, vote, test = split_list_into_fractions(part, [0.6, 0.2, 0.2])
        assert len(set(y[train])) == 3  # warm_start needs every class in every learner's train set
        learners.append(IrisForestLearner((x[train], y[train]), (x[vote], y[vote]), (x[test], y[test]),
                                          seed=seed + len(learners)))
    return learners


# ---- the driver loop, as 0.2.x examples wrote it ---------------------------------------------------
@pytest.mark.timeout(120)
def test_the_0_2_x_example_loop_runs_unchanged_under_agg(tmp_path, capsys):
    assert not is_interactive_backend()  # the suite runs with MPLBACKEND=Agg
    learners = iris_learners()
    n_rounds, vote_threshold = 6, 0.5
    set_equal_weights(learners)
    results = Results()
    results.data.append(initial_result(learners))
    plot = ColearnPlot(score_name="accuracy", save_path=tmp_path / "live.png")
    for round_index in range(n_rounds):
        results.data.append(collective_learning_round(learners, vote_threshold, round_index))
        print_results(results)
        plot.plot_results_and_votes(results)
    plot.block()  # returns instead of waiting for a window (the timeout marker catches a hang)
    assert (tmp_path / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = capsys.readouterr().out
    assert out.count("Doing collective learning round") == n_rounds
    assert out.count("LATEST ROUND RESULTS") == n_rounds
    assert f"Selected proposer:\t {(n_rounds - 1) % 3}" in out

    assert len(results.data) == n_rounds + 1
    assert [r.block_proposer for r in results.data[1:]] == [i % 3 for i in range(n_rounds)]
    for r in results.data[1:]:
        assert r.votes[r.block_proposer] is None
        assert all(isinstance(v, bool) for i, v in enumerate(r.votes) if i != r.block_proposer)
    # set_equal_weights gave everyone learner 0's model, and every accepted proposal went to all learners:
    # each as its own copy (0.2.x shared one object, so a learner changing it changed everyone's)
    x, _ = load_iris(return_X_y=True)
    assert len({id(learner.model) for learner in learners}) == len(learners)
    assert all(np.array_equal(learner.model.predict_proba(x), learners[0].model.predict_proba(x))
               for learner in learners)
    # the live plot drew the votes it was given
    assert np.array_equal(plot.votes_axes.images[0].get_array(), legacy_vote_matrix(results))
    results.process_statistics()
    assert results.current_mean_test_score == pytest.approx(np.mean(results.data[-1].test_scores))
    assert results.current_mean_test_score > 0.8  # a forest on iris learns


def test_recorded_scores_are_the_held_models_after_a_rejected_round():
    # target 1: going 0 -> 1 is approved by all; 1 -> 2 is worse, so rejected
    learners = [PlusOne(target=1) for _ in range(3)]
    first = initial_result(learners)
    accepted = collective_learning_round(learners, 0.5, 0)
    rejected = collective_learning_round(learners, 0.5, 1)
    assert first.test_scores == [-1.0] * 3
    assert accepted.vote is True and accepted.test_scores == [0.0] * 3
    assert rejected.vote is False
    assert rejected.test_scores == [0.0] * 3  # what they hold; colearn 0.2.8 recorded the proposal's -1.0
    assert rejected.vote_scores == [0.0] * 3
    assert [learner.value for learner in learners] == [1, 1, 1]


def test_legacy_tally_counts_abstentions_against():
    # 3 learners, threshold 0.5: one approval is enough (1 >= (3 - 1) * 0.5)
    _, accepted = run_one_round(0, [PlusOne(), Voter(True), Voter(False)], vote_threshold=0.5)
    assert accepted is True
    # 3 learners, threshold 0.6: one approval is not (1 < 1.2)
    _, accepted = run_one_round(0, [PlusOne(), Voter(True), Voter(False)], vote_threshold=0.6)
    assert accepted is False
    # 4 learners, threshold 0.5: 1 approve, 1 reject, 1 abstain -> 1 < 1.5, rejected; the new rule accepts
    learners = [PlusOne(), Voter(True), Voter(False), Voter("raise")]
    entries, accepted = run_one_round(0, learners, vote_threshold=0.5)
    assert accepted is False
    assert [e.vote for e in entries] == [None, True, False, None]
    new_rule = Experiment([PlusOne(), Voter(True), Voter(False), Voter("raise")], ProtocolConfig()).run(1)
    assert new_rule.rounds[0].accepted is True


def test_run_one_round_returns_one_entry_per_learner_and_proposer_round_robin():
    learners = [PlusOne(target=10) for _ in range(3)]
    entries, accepted = run_one_round(4, learners)  # proposer 4 % 3 == 1
    assert accepted is True
    assert len(entries) == 3 and all(isinstance(e, ProposedWeights) for e in entries)
    assert [e.vote for e in entries] == [True, None, True]
    assert all(e.weights.weights == 1 for e in entries)
    assert [learner.value for learner in learners] == [1, 1, 1]  # everyone accepted
    # the proposer's entry: scores of the model it now holds (the proposal's, scored once by itself)
    assert entries[1].vote_score == entries[1].test_score == -9.0


def test_proposer_entry_after_a_rejection_has_its_unchanged_held_scores():
    learners = [PlusOne(target=0) for _ in range(3)]
    entries, accepted = run_one_round(0, learners)
    assert accepted is False
    assert entries[0].vote is None and entries[0].test_score == 0.0  # holds 0, scores 0; proposal scored -1
    assert entries[1].test_score == -1.0  # a voter's entry is its verdict on the proposal, as in 0.2.x


def test_a_failed_voter_abstains_with_nan_scores_and_its_error():
    learners = [PlusOne(), Voter("raise"), PlusOne()]
    entries, accepted = run_one_round(0, learners)
    assert accepted is True  # 1 approval >= (3 - 1) * 0.5
    failed = entries[1]
    assert failed.vote is None and math.isnan(failed.vote_score) and math.isnan(failed.test_score)
    assert "voter broke" in failed.evaluation_results["error"]


def test_a_failing_proposer_gives_a_rejected_round_not_a_crash():
    class Broken(PlusOne):
        def mli_propose_weights(self):
            raise RuntimeError("cannot train")

    learners = [Broken(), PlusOne(), PlusOne()]
    entries, accepted = run_one_round(0, learners)
    assert accepted is False
    assert [e.vote for e in entries] == [None, None, None]
    assert "cannot train" in entries[0].evaluation_results["error"]
    assert [learner.value for learner in learners] == [0, 0, 0]


def test_held_scores_persist_across_calls_so_a_rejected_round_costs_only_the_votes():
    learners = [PlusOne(target=1) for _ in range(3)]
    initial_result(learners)
    assert [learner.test_calls for learner in learners] == [1, 1, 1]
    collective_learning_round(learners, 0.5, 0)  # accepted: 2 voters + the proposer scoring its own
    assert [learner.test_calls for learner in learners] == [2, 2, 2]
    collective_learning_round(learners, 0.5, 1)  # rejected: only the 2 voters
    assert [learner.test_calls for learner in learners] == [3, 2, 3]
    assert len(standalone_driver.experiment_results(learners).rounds) == 2


def test_a_model_changed_behind_colearns_back_is_re_evaluated():
    learners = [PlusOne(target=5) for _ in range(3)]
    initial_result(learners)
    collective_learning_round(learners, 0.5, 0)  # all hold 1
    learners[2].mli_accept_weights(Weights(weights=4))  # not through colearn
    result = collective_learning_round(learners, 1.0, 1)  # learner 2 now rejects 1 -> 2 (it holds 4)
    assert result.vote is False
    assert result.test_scores == [-4.0, -4.0, -1.0]


def test_set_equal_weights_gives_everyone_the_first_model_and_resets_the_record():
    learners = [PlusOne(value=3), PlusOne(value=7), PlusOne(value=9)]
    initial_result(learners)
    run_one_round(0, learners)
    set_equal_weights(learners)
    assert [learner.value for learner in learners] == [3, 3, 3]
    assert standalone_driver.experiment_results(learners) is None
    result = collective_learning_round(learners, 0.5, 0)
    record = standalone_driver.experiment_results(learners)
    assert record.initial_test_scores == [-97.0] * 3  # held scores re-evaluated from the equal models
    assert result.vote is True and result.test_scores == [-96.0] * 3
    assert len(record.rounds) == 1


def test_run_and_individual_training_round():
    learners = [PlusOne() for _ in range(3)]
    results = run(4, learners)
    assert [r.proposer for r in results.rounds] == [0, 1, 2, 0]
    assert [learner.value for learner in learners] == [4, 4, 4]
    result = individual_training_round(learners, 4)
    assert result.votes == [True] * 3 and result.test_scores == [-95.0] * 3
    assert [learner.value for learner in learners] == [5, 5, 5]


def test_learners_that_cannot_be_weakly_referenced_still_work():
    learners = [Slotted(), Slotted(), Slotted()]
    first = initial_result(learners)
    result = collective_learning_round(learners, 0.5, 0)
    assert first.test_scores == [-100.0] * 3 and result.test_scores == [-99.0] * 3


def test_the_driver_forgets_learners_that_are_gone():
    learners = [PlusOne() for _ in range(3)]
    run_one_round(0, learners)
    assert standalone_driver.experiment_results(learners) is not None
    key = tuple(id(learner) for learner in learners)
    del learners
    gc.collect()
    assert key not in standalone_driver._SESSIONS


def test_learner_from_the_later_sources_with_dict_scores_and_get_current_model():
    learners = [LaterSourcesLearner([1.0, 2.0]), LaterSourcesLearner([1.0, 2.0]), LaterSourcesLearner([3.0, 0.0])]
    set_equal_weights(learners)
    results = Results()
    results.data.append(initial_result(learners))
    for round_index in range(3):
        results.data.append(collective_learning_round(learners, 0.5, round_index))
    assert all(isinstance(s, float) for r in results.data for s in r.test_scores)
    assert results.data[1].vote is True
    assert results.data[1].test_scores[0] == pytest.approx(-np.linalg.norm([0.5, 1.0]))
    model = learners[0].mli_get_current_model()
    assert model.model_format == ModelFormat.WEIGHTS_ONLY and model.model == learners[0].weights.tolist()


# ---- results, printing, data --------------------------------------------------------------------
def test_process_statistics_as_0_2_x():
    results = Results()
    for test, vote in (([0.5, 0.7], [0.4, 0.6]), ([0.6, 0.9], [0.5, 0.8]), ([0.8, 0.6], [0.7, 0.9])):
        result = Result()
        result.test_scores, result.vote_scores, result.votes = test, vote, [True, True]
        results.data.append(result)
    results.process_statistics()
    assert results.h_test_scores == [[0.5, 0.6, 0.8], [0.7, 0.9, 0.6]]
    assert results.mean_test_scores == pytest.approx([0.6, 0.75, 0.7])
    assert results.max_vote_scores == pytest.approx([0.6, 0.8, 0.9])
    assert results.highest_test_score == 0.9 and results.highest_mean_test_score == pytest.approx(0.75)
    assert results.current_mean_vote_score == pytest.approx(0.8)
    assert results.current_max_test_score == 0.8
    assert results.mean_mean_test_score == pytest.approx(np.mean([0.5, 0.7, 0.6, 0.9, 0.8, 0.6]))


def test_print_results_prints_the_latest_round(capsys):
    results = Results()
    result = Result()
    result.vote, result.block_proposer, result.votes = True, 1, [True, None, False]
    result.test_scores, result.vote_scores = [0.91, 0.8, float("nan")], [0.5, 0.6, 0.7]
    results.data.append(result)
    print_results(results)
    lines = capsys.readouterr().out.splitlines()
    assert "Selected proposer:\t 1" in lines and "New model accepted:\t True" in lines
    assert lines[5].split() == ["0", "True", "0.910", "0.500"]
    assert lines[6].split() == ["1", "None", "0.800", "0.600"]
    assert lines[7].split() == ["2", "False", "nan", "0.700"]


def test_from_experiment_results_matches_the_held_scores():
    learners = [PlusOne(target=1) for _ in range(3)]
    new = Experiment(learners, ProtocolConfig()).run(2)
    legacy = from_experiment_results(new)
    assert len(legacy.data) == 3 and legacy.data[0].votes == [True] * 3
    assert [r.vote for r in legacy.data[1:]] == [True, False]
    assert legacy.data[2].test_scores == [0.0] * 3 and legacy.data[2].block_proposer == 1


def test_split_list_into_fractions_as_0_2_x():
    parts = split_list_into_fractions(list(range(10)), [0.6, 0.2, 0.2])
    assert parts == [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]]
    assert split_list_into_fractions(np.arange(10), [0.5, 0.9])[1].tolist() == [5, 6, 7, 8, 9]  # clipped
    with pytest.raises(InsufficientDataError, match=r"fractions_list\[2\]"):
        split_list_into_fractions(list(range(10)), [0.6, 0.4, 0.1])
    with pytest.raises(Exception, match="min_part_size=3"):
        split_list_into_fractions(list(range(10)), [0.8, 0.2], min_part_size=3)


def test_get_data_returns_local_paths_and_refuses_downloads(tmp_path):
    assert get_data(f"file://{tmp_path}") == str(tmp_path)
    assert get_data(tmp_path) == tmp_path
    with pytest.raises(DownloadNotSupportedError, match="data_dir='gs://bucket/x'.*not supported"):
        get_data("gs://bucket/x")
