"""Votes that hold when some learners lie: each test performs an attack and asserts what the protocol guarantees.

Attackers are the benchmark's malicious MLI wrappers (bench/attacks.py) around honest learners.
"""
from __future__ import annotations

import numpy as np
import pytest

from bench.attacks import Coalition, MaliciousLearner
from bench.byzantine import Watch, build_learners
from colearn import Experiment, ExperimentResults, ProtocolConfig, TallyRule, Weights
from colearn.backends.base import Failure
from colearn.data import load_task, split_learner_data
from colearn.protocol import (RoundOutcome, Strategy, Tally, ThresholdStrategy, VoteVerdict, interpret_vote,
                              tally)
from colearn.registry import make_learner
from colearn.strategies import SuspendingStrategy
from tests.learners import FixedVoter, PlusOneLearner


@pytest.fixture(scope="module")
def digits5():
    return split_learner_data(load_task("digits"), 5, seed=0)


def run_attack(datas, attack, k=2, rounds=10, rule=None, strategy=None, threshold=0.5, learner="sgd", seed=0):
    learners, bad = build_learners(learner, datas, seed, attack, k, vote_rule=rule)
    honest = [i for i in range(len(learners)) if i not in bad]
    watch = Watch(learners, honest)
    config = ProtocolConfig(vote_threshold=threshold, strategy=strategy)
    results = Experiment(learners, config, hooks=[watch]).run(rounds)
    return learners, bad, results, watch


# --- what is voted on is what is adopted -------------------------------------------------------------
@pytest.mark.parametrize("attack", ["nan+collude", "mutate+collude", "hidden-state+collude"])
def test_honest_learners_hold_only_voted_finite_weights(digits5, attack):
    learners, bad, results, watch = run_attack(digits5, attack)
    assert watch.violations == []
    assert all(r.proposal_digest for r in results.rounds if r.proposer_error is None)


def test_nan_proposals_are_refused_before_anyone_votes(digits5):
    _, bad, results, _ = run_attack(digits5, "nan+collude")
    refused = [r for r in results.rounds if r.proposer in bad]
    assert refused and all(not r.accepted and "non-finite" in r.proposer_error for r in refused)
    assert all(vote is None for r in refused for vote in r.votes)  # nobody was asked


def test_a_voter_mutating_the_proposal_changes_nothing_for_the_others():
    class Vandal(PlusOneLearner):
        def mli_test_weights(self, weights):
            weights.weights = 10**6  # swap what it was handed
            return super().mli_test_weights(weights)

    learners = [PlusOneLearner(), Vandal(), PlusOneLearner()]
    record = Experiment(learners).run_round()
    assert record.accepted and [learner.value for learner in learners] == [1, 1, 1]


def test_a_proposer_that_rewrites_its_returned_arrays_later_cannot_change_what_was_voted(digits5):
    class Rewriter(type(make_learner("sgd", digits5[0], seed=0))):
        def mli_propose_weights(self):
            self.sent = super().mli_propose_weights()
            return self.sent

        def mli_accept_weights(self, weights):
            for value in self.sent.weights.values():
                value[...] = 0  # the arrays it handed out, rewritten in place before the others adopt
            super().mli_accept_weights(weights)

    base = make_learner("sgd", digits5[0], seed=0)
    rewriter = Rewriter(base.model, digits5[0], seed=0, features=base.features)
    learners = [rewriter] + [make_learner("sgd", d, seed=i) for i, d in enumerate(digits5[1:], 1)]
    watch = Watch(learners, range(1, 5))
    results = Experiment(learners, hooks=[watch]).run(1)
    held = [learners[i].mli_get_current_weights().weights["average_coef_"] for i in range(1, 5)]
    assert results.rounds[0].accepted and all(np.abs(h).sum() > 0 for h in held) and watch.violations == []


def test_received_arrays_are_read_only_views():
    seen = []

    class Keeper(PlusOneLearner):
        def mli_propose_weights(self):
            return Weights(weights={"w": np.ones(3)})

        def mli_test_weights(self, weights):
            seen.append(weights.weights["w"])
            return super().mli_test_weights(Weights(weights=self.value + 1))

    Experiment([Keeper(), Keeper(), Keeper()]).run_round()
    assert len(seen) == 3 and len({id(array) for array in seen}) == 3  # two voters, then the proposer scores it
    for array in seen:
        with pytest.raises(ValueError):
            array[0] = 5.0
        with pytest.raises(ValueError):
            array.flags.writeable = True


# --- abstention cannot carry a vote ------------------------------------------------------------------
def test_a_voter_that_cannot_score_the_proposal_rejects_it():
    assert interpret_vote(Failure(1, "WeightsMismatchError: shape", "refused")).vote is False
    assert interpret_vote(Failure(1, "timed out", "timeout")).vote is None  # its own failure: abstains


def test_one_colluder_is_not_all_the_voters_when_the_others_cannot_score():
    class Unscorable(PlusOneLearner):  # raises the refusal colearn's learners raise for bad weights
        def mli_test_weights(self, weights):
            from colearn.learner_utils import WeightsMismatchError
            raise WeightsMismatchError("weights: contains NaN")

    learners = [PlusOneLearner(), PlusOneLearner(), Unscorable(), Unscorable()]
    record = Experiment(learners).run_round()
    assert record.votes == [None, True, False, False] and not record.accepted


def test_quorum_needs_enough_valid_votes():
    assert tally([True, None, None], 0.5).accepted is False  # 1 valid of 3 < 1/2
    assert tally([True, True, None], 0.5).accepted is True
    assert tally([True, None, None], 0.5, quorum=0.3).accepted is True
    assert tally([True, None, None], 0.5, TallyRule.FRACTION_OF_VOTERS).accepted is True
    with pytest.raises(ValueError, match="quorum"):
        ProtocolConfig(quorum=1.5)


# --- attacks on real learners ------------------------------------------------------------------------
@pytest.mark.parametrize("attack", ["label-flip+collude", "random+collude", "zero+collude"])
def test_poison_with_a_colluding_approver_is_rejected(digits5, attack):
    _, bad, results, _ = run_attack(digits5, attack)
    assert not any(r.accepted for r in results.rounds if r.proposer in bad)


def test_the_old_rule_lets_label_flip_through_and_the_default_does_not(digits5):
    _, bad, old, _ = run_attack(digits5, "label-flip+collude", rule="not-worse", rounds=20)
    _, _, new, _ = run_attack(digits5, "label-flip+collude", rounds=20)
    malicious_accepted = [sum(r.accepted for r in res.rounds if r.proposer in bad) for res in (old, new)]
    assert malicious_accepted[0] > 0 and malicious_accepted[1] == 0


@pytest.mark.slow
def test_a_targeted_class_cut_is_refused_more_often_when_voters_watch_margins():
    """The stealthy attack: each malicious proposal lowers one class's bias by as much as the attacker's own vote
    still approves (so accuracy barely moves), and the colluders approve. Counting flipped predictions lets most
    cuts through; the margins show the class singled out."""
    from bench.attacks import TARGET_CLASS, evaluate_on, recall
    datas = split_learner_data(load_task("digits"), 10, seed=1)
    x_test = np.concatenate([d.x_test for d in datas])
    y_test = np.concatenate([d.y_test for d in datas])
    outcomes = []
    from colearn.vote_rules import Robust, robust_margins_rule

    for rule in (Robust(step_factor=None), robust_margins_rule(step_factor=None)):  # the margins check alone
        learners, bad, results, watch = run_attack(datas, "class-cut+collude", k=3, rounds=20, rule=rule)
        honest = [i for i in range(10) if i not in bad]
        cut_accepted = sum(r.accepted for r in results.rounds if r.proposer in bad)
        target_recall = np.mean([recall(evaluate_on(learners[i], x_test), y_test, TARGET_CLASS) for i in honest])
        outcomes.append((cut_accepted, target_recall))
        assert watch.violations == []
    (old_accepted, old_recall), (new_accepted, new_recall) = outcomes
    assert new_accepted < old_accepted
    assert new_recall > old_recall + 0.1 and new_recall > 0.9


@pytest.mark.slow
def test_a_class_cut_no_honest_voter_can_see_in_its_data_is_refused_by_its_size():
    """Dirichlet shares: the attackers hold almost no sample of the class, so their own vote tolerates a cut
    thousands of times an honest step, and voters without the class see nothing in their data. Without the step
    check the class is erased for good; with it, no honest model loses the class."""
    from bench.attacks import TARGET_CLASS, evaluate_on, recall
    from colearn.vote_rules import Robust

    datas = split_learner_data(load_task("digits"), 5, partition="dirichlet", alpha=0.3, seed=0)
    x_test = np.concatenate([d.x_test for d in datas])
    y_test = np.concatenate([d.y_test for d in datas])
    recalls = []
    for rule in (Robust(step_factor=None), None):
        learners, bad, results, watch = run_attack(datas, "class-cut+collude", k=2, rounds=20, rule=rule)
        honest = [i for i in range(5) if i not in bad]
        recalls.append(min(recall(evaluate_on(learners[i], x_test), y_test, TARGET_CLASS) for i in honest))
        assert watch.violations == []
    assert recalls[0] < 0.5 < 0.85 < recalls[1]


@pytest.mark.slow
def test_a_neural_network_s_voters_refuse_a_class_cut_by_the_size_of_its_output_step():
    """torch-mlp, 2 attackers of 5, Dirichlet shares: they lower class 1's output bias as far as their own vote
    allows. Holding no sample of the class, their vote allows the search's cap and the class is erased for good;
    the output-layer step check (torch-mlp: 15 times the median output unit that moved) keeps it."""
    pytest.importorskip("torch")
    from bench.attacks import TARGET_CLASS, evaluate_on, recall
    from colearn.vote_rules import make_vote_rule

    datas = split_learner_data(load_task("digits"), 5, partition="dirichlet", alpha=0.3, seed=1)
    x_test = np.concatenate([d.x_test for d in datas])
    y_test = np.concatenate([d.y_test for d in datas])
    recalls = []
    for rule, attack in ((make_vote_rule("chance", step_factor=None), "class-cut+collude"),
                         (None, "class-cut+collude"), (None, None)):
        learners, bad, results, watch = run_attack(datas, attack, rounds=20, rule=rule, learner="torch-mlp", seed=1)
        assert watch.violations == []
        recalls.append([recall(evaluate_on(learners[i], x_test), y_test, TARGET_CLASS) for i in range(3)])
    without_check, with_check, honest_only = recalls
    assert max(without_check) < 0.1  # erased
    assert min(with_check) > min(honest_only) - 0.1 and min(honest_only) > 0.7  # kept, within 10 points


def test_an_implausible_step_counter_is_refused_by_every_honest_voter(digits5):
    learners = [make_learner("sgd", d, seed=i) for i, d in enumerate(digits5)]
    proposal = learners[0].mli_propose_weights()
    frozen = Weights(weights=dict(proposal.weights, t_=np.asarray(1e15)))  # honest coefficients, t_ poisoned
    record = Experiment([_Sends(frozen)] + learners[1:]).run_round()
    assert record.votes[1:] == [False] * 4 and not record.accepted
    assert all("t_" in error for error in record.vote_errors[1:])
    assert max(float(learner.model.t_) for learner in learners[1:]) < 1e6


class _Sends(PlusOneLearner):
    """Proposes the given weights."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def mli_propose_weights(self):
        return self.weights


def test_garbage_in_round_zero_is_rejected_although_the_held_model_is_untrained(digits5):
    _, bad, results, _ = run_attack(digits5, "garbage-round0+collude", rounds=1)
    assert results.rounds[0].proposer in bad and not results.rounds[0].accepted


# --- strategies --------------------------------------------------------------------------------------
def test_a_custom_strategy_sees_verdicts_and_history():
    seen = []

    class Unanimous(Strategy):
        name = "unanimous"

        def decide(self, proposer, verdicts, n_learners, history):
            seen.append((proposer, dict(verdicts), len(history)))
            votes = [v.vote for v in verdicts.values()]
            return Tally(votes.count(True), votes.count(False), votes.count(None), all(votes))

    learners = [PlusOneLearner(), PlusOneLearner(), PlusOneLearner(limit=1)]
    results = Experiment(learners, ProtocolConfig(strategy=Unanimous())).run(2)
    assert [r.accepted for r in results.rounds] == [True, False]
    assert [h for _, _, h in seen] == [0, 1] and isinstance(seen[0][1][1], VoteVerdict)
    assert results.config["protocol"]["strategy"] == "unanimous"
    with pytest.raises(ValueError, match="strategy"):
        ProtocolConfig(strategy="unanimous")


def test_suspending_strategy_passes_over_a_proposer_the_record_condemns(digits5):
    _, bad, results, _ = run_attack(digits5, "zero+collude", rounds=10, strategy=SuspendingStrategy())
    proposals = [r.proposer for r in results.rounds]
    assert sum(p in bad for p in proposals) < sum(p in bad for p in (i % 5 for i in range(10)))
    assert set(bad) <= {i for r in results.rounds for i in r.flagged}


def test_condemned_means_refused_or_voted_down():
    from colearn.strategies import proposal_condemned, strikes

    no = VoteVerdict(False)
    yes = VoteVerdict(True)
    history = [RoundOutcome(0, 0, False, {1: no, 2: no}), RoundOutcome(1, 1, True, {0: yes}),
               RoundOutcome(2, 0, False, {}, "RuntimeError: boom"),
               RoundOutcome(3, 2, False, {}, "DP_BUDGET_EXCEEDED")]
    assert [proposal_condemned(o) for o in history] == [True, False, True, False]
    assert strikes(history)[0] == (2, 2)


def test_threshold_strategy_equals_tally():
    strategy = ThresholdStrategy(0.5)
    verdicts = {1: VoteVerdict(True), 2: VoteVerdict(False), 3: VoteVerdict(None)}
    assert strategy.decide(0, verdicts, 4, []) == tally([True, False, None], 0.5)


def test_coalition_bookkeeping_recognises_its_own_proposals(digits5):
    coalition = Coalition({0})
    attacker = MaliciousLearner(make_learner("sgd", digits5[0], seed=0), 0, coalition, "zero", "collude", 10, 0)
    proposal = attacker.mli_propose_weights()
    assert attacker.mli_test_weights(proposal).vote is True


def test_a_restored_experiment_continues_with_the_strategy_s_history():
    def learners():
        return [PlusOneLearner(), PlusOneLearner(), PlusOneLearner(limit=3), FixedVoter(False), FixedVoter(False)]

    def config():
        return ProtocolConfig(strategy=SuspendingStrategy())

    whole = Experiment(learners(), config()).run(12)
    group = learners()
    first = Experiment(group, config()).run(6)
    second = Experiment(group, config())
    second.restore(ExperimentResults.model_validate_json(first.to_json()))
    second.run(6)
    assert second.results.to_json(include_timings=False) == whole.to_json(include_timings=False)
    assert any(r.flagged for r in whole.rounds)


@pytest.mark.parametrize("name", ["sgd", "torch-mlp"])
def test_every_learner_refuses_non_finite_weights_on_test_and_on_accept(digits5, name):
    from colearn.learner_utils import WeightsMismatchError

    learner = make_learner(name, digits5[0], seed=0)
    weights = {k: np.array(v, copy=True) for k, v in learner.mli_get_current_weights().weights.items()}
    key = next(k for k, v in weights.items() if v.dtype.kind == "f" and v.ndim)
    weights[key].flat[0] = np.nan
    before = {k: np.array(v, copy=True) for k, v in learner.mli_get_current_weights().weights.items()}
    for action in (learner.mli_test_weights, learner.mli_accept_weights):
        with pytest.raises(WeightsMismatchError, match="NaN or infinite"):
            action(Weights(weights=weights))
    after = learner.mli_get_current_weights().weights
    assert all(np.array_equal(np.asarray(after[k]), before[k]) for k in before)


def test_a_learner_catching_up_adopts_a_step_counter_many_proposals_ahead(digits5):
    ahead = make_learner("sgd", digits5[0], seed=0)
    for _ in range(5):  # five proposals in a row, each adopted
        ahead.mli_accept_weights(ahead.mli_propose_weights())
    behind = make_learner("sgd", digits5[1], seed=1)
    behind.mli_accept_weights(ahead.mli_get_current_weights())  # e.g. restored by `colearn run --resume`
    assert float(behind.model.t_) == float(ahead.model.t_)


def test_the_attack_benchmark_runs_a_chosen_vote_rule_and_writes_its_cells(tmp_path):
    import json

    from bench.byzantine import main

    out = tmp_path / "cells.json"
    main(["--learners", "sgd", "--methods", "colearn", "--attacks", "zero", "--configs", "3:1", "--seeds", "0",
          "--thresholds", "0.5", "--rounds", "2", "--workers", "1", "--vote-rule", "robust-margins",
          "--out", str(out)])
    written = json.loads(out.read_text())
    cells = written["raw"]
    assert len(cells) == 4 and not any("error" in cell for cell in cells)  # 2 partitions x (honest, zero)
    assert {cell["attack"] for cell in cells} == {"none", "zero"}
    assert all(cell["malicious_accepted"] == 0 for cell in cells if cell["attack"] == "zero")
    assert "--vote-rule robust-margins" in written["command"]
