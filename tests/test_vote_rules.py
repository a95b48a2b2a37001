"""The vote rules: each sees the proposal's and the held model's evaluations and the voter's memory."""
from __future__ import annotations

import math

import numpy as np
import pytest

from colearn.vote_rules import (BestReference, Evaluation, Margin, NotWorse, PerClass, Robust, Strict, VoteMemory,
                                Voter, class_losses, class_shifts, lopsided_step, make_vote_rule,
                                output_layer_steps, parameter_steps, singled_out, trivial_score)

LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])


def ev(score, predictions=None, hidden=None):
    return Evaluation(score, None if predictions is None else np.array(predictions), LABELS, hidden)


def test_ties_approve_under_not_worse_and_reject_under_0_2_x_strict():
    assert NotWorse().vote(ev(0.9), ev(0.9), VoteMemory()) is True
    assert Strict().vote(ev(0.9), ev(0.9), VoteMemory()) is False
    assert Strict().vote(ev(0.91), ev(0.9), VoteMemory()) is True
    assert NotWorse().vote(ev(0.5), ev(0.4), VoteMemory(), minimise=True) is False  # a loss: lower is better


def test_margin_and_best_reference():
    assert Margin(0.05).vote(ev(0.94), ev(0.9), VoteMemory()) is False
    assert Margin(-0.05).vote(ev(0.86), ev(0.9), VoteMemory()) is True
    memory = VoteMemory()
    memory.held(0.95)
    memory.held(0.90)  # an accepted small loss does not lower the reference
    assert memory.best == 0.95
    assert BestReference().vote(ev(0.92), ev(0.90), memory) is False
    assert BestReference(tolerance=0.05).vote(ev(0.92), ev(0.90), memory) is True


def test_per_class_refuses_a_proposal_that_trades_one_class_for_the_others():
    held = ev(0.7, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])  # class 2 all wrong
    cut = ev(0.7, [0, 0, 0, 0, 0, 1, 2, 2, 0, 0])  # gains 2 of class 2, loses 2 of class 1
    assert class_losses(cut, held) == {0: 0, 1: 2, 2: -2}
    assert NotWorse().vote(cut, held, VoteMemory()) is True
    assert PerClass(max_class_loss=1).vote(cut, held, VoteMemory()) is False
    assert PerClass(max_class_loss=2).vote(cut, held, VoteMemory()) is True


def test_robust_refuses_what_does_not_beat_chance_and_a_spoilt_hidden_state():
    assert trivial_score(LABELS) == pytest.approx(0.4)
    untrained = ev(0.4, [2] * 10)
    assert Robust().vote(ev(0.4, [2] * 10), untrained, VoteMemory()) is False  # a constant answer is chance
    assert Robust().vote(ev(0.5, [2] * 9 + [1]), untrained, VoteMemory()) is False  # within chance on 10 samples
    assert Robust().vote(ev(1.0, LABELS), untrained, VoteMemory()) is True
    assert Robust().vote(ev(0.9, LABELS, hidden=0.5), ev(0.9, LABELS, hidden=0.9), VoteMemory()) is False
    assert Robust().vote(ev(0.9, LABELS, hidden=0.8), ev(0.9, LABELS, hidden=0.9), VoteMemory()) is True


def test_voter_rejects_non_finite_scores_and_remembers_the_best_held():
    voter = Voter("not-worse")
    assert voter.vote(ev(math.nan), ev(0.5)) is False
    assert voter.vote(ev(0.1), ev(math.nan)) is True  # nothing scorable held: judged alone
    voter.adopted(ev(0.8))
    voter.adopted(ev(0.7))
    assert voter.memory.best == 0.8


def test_rules_by_name_and_errors_that_name_the_parameter():
    assert isinstance(make_vote_rule(), Robust)
    assert make_vote_rule("margin", margin=0.1).margin == 0.1
    with pytest.raises(ValueError, match="vote_rule: unknown rule 'lenient'"):
        make_vote_rule("lenient")
    with pytest.raises(ValueError, match="vote_rule 'margin'"):
        make_vote_rule("margin", tolerance=1)


def test_chance_floor_refuses_guessing_and_chance_is_robust_without_per_class():
    from colearn.vote_rules import chance_floor

    labels = np.repeat(np.arange(4), 25)
    constant = np.zeros(100, dtype=int)  # an untrained model's constant answer: accuracy 0.25, chance 0.25
    assert chance_floor(constant, labels) > 0.25
    assert Robust().vote(Evaluation(0.25, constant, labels), None, VoteMemory()) is False
    learnt = labels.copy()
    learnt[:10] = 3
    assert Robust().vote(Evaluation(0.9, learnt, labels), None, VoteMemory()) is True
    chance = make_vote_rule("chance")
    held = ev(0.7, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    cut = ev(0.7, [0, 0, 0, 0, 0, 1, 2, 2, 0, 0])  # loses two of class 1: per-class refuses, chance does not
    assert chance.name == "chance" and chance.vote(cut, held, VoteMemory()) is True
    assert Robust(max_class_loss=1).vote(cut, held, VoteMemory()) is False


def margins_ev(margins):
    margins = np.asarray(margins, dtype=float)
    return Evaluation(float(np.mean(margins > 0)), np.where(margins > 0, LABELS, (LABELS + 1) % 3), LABELS,
                      margins=margins)


def test_class_shifts_measure_each_class_s_margin_move_in_units_of_the_held_margin():
    held = margins_ev([2.0] * 10)
    lowered = margins_ev([2.0] * 6 + [1.0] * 4)  # class 2's samples lose half their margin
    assert class_shifts(lowered, held) == {0: 0.0, 1: 0.0, 2: -0.5}
    assert class_shifts(lowered, None) == {} and class_shifts(ev(1.0, LABELS), held) == {}
    assert class_shifts(margins_ev([2.0] * 9 + [math.nan]), held) == {}


def test_robust_refuses_a_proposal_that_singles_out_one_class_beyond_what_the_voter_has_seen():
    held = margins_ev([2.0] * 10)
    voter = Voter("robust-margins")
    for step in (0.1, 0.12, 0.08, 0.11):  # ordinary proposals: every class gains a little
        assert voter.vote(margins_ev([2.0 + step] * 10), held) is True
    assert set(voter.memory.shifts) == {0, 1, 2} and len(voter.memory.shifts[2]) == 4
    cut = margins_ev([2.2] * 6 + [1.5] * 4)  # class 2 still right on every sample, but pushed down
    assert class_losses(cut, held) == {0: 0, 1: 0, 2: 0}  # no prediction flips: the per-class count sees nothing
    assert singled_out(class_shifts(cut, held), voter.memory.shifts, 1.5, 0.05) == 2
    assert voter.vote(cut, held) is False
    assert Robust().vote(cut, held, voter.memory) is True  # the default counts flipped predictions only
    assert Robust(shift_spread=1.5).vote(cut, held, voter.memory) is False
    assert make_vote_rule("robust-margins", shift_spread=100.0).vote(cut, held, voter.memory) is True


def test_a_class_that_ordinary_proposals_also_push_down_is_not_singled_out():
    memory = VoteMemory()
    for shift in (-0.4, 0.1, -0.3, 0.2, -0.5, 0.0):  # non-IID: proposers without class 2 push it down
        memory.scored({2: shift})
    assert singled_out({2: -0.45}, memory.shifts, 1.5, 0.05) is None
    assert singled_out({2: -3.0}, memory.shifts, 1.5, 0.05) == 2
    assert singled_out({2: -3.0}, {2: [0.0, 0.0]}, 1.5, 0.05) is None  # too little history
    for _ in range(100):
        memory.scored({2: 0.0})
    assert len(memory.shifts[2]) == 64  # bounded: the latest proposals only


def test_parameter_steps_measure_each_output_unit_and_a_lopsided_one_is_refused():
    held = {"coef": np.zeros((4, 3)), "bias": np.zeros(4), "t": np.asarray(5.0), "counts": np.arange(4)}
    honest = {"coef": np.full((4, 3), 0.1), "bias": np.array([0.2, 0.1, 0.3, 0.2]), "t": np.asarray(9.0),
              "counts": np.arange(4) + 1}
    steps = parameter_steps(honest, held)
    assert [list(s) for s in steps] == [pytest.approx([0.1] * 4), pytest.approx([0.2, 0.1, 0.3, 0.2])]
    assert lopsided_step(steps, 100.0) is None
    cut = dict(honest, bias=np.array([0.2, -50.0, 0.3, 0.2]))  # one class's bias pushed down 250 times the rest
    assert lopsided_step(parameter_steps(cut, held), 100.0) == 1
    assert parameter_steps({"other": np.zeros(4)}, held) is None
    assert lopsided_step((np.array([0.0, 0.0, 7.0]),), 100.0) is None  # nothing else moved: not judged
    assert lopsided_step((np.array([0.1, 50.0]),), 100.0) is None  # too few units to tell
    # units that did not move (classes a restricted softmax left out) are no reference
    assert lopsided_step((np.array([0.0, 0.0, 0.0, 0.1, 0.12, 0.09, 30.0]),), 100.0) == 0
    assert lopsided_step((np.array([0.0, 0.0, 0.0, 0.1, 0.12, 0.09, 5.0]),), 100.0) is None
    assert lopsided_step((np.array([0.0, 0.0, 0.1, 30.0]),), 100.0) == 0  # two moved: the smaller is the reference


def test_output_layer_steps_judge_the_last_layer_only_so_dead_hidden_units_do_not_count():
    held = {"0.weight": np.zeros((6, 4)), "0.bias": np.zeros(6), "2.weight": np.zeros((3, 6)), "2.bias": np.zeros(3)}
    honest = {"0.weight": np.zeros((6, 4)), "0.bias": np.array([1e-3, 1e-3, 1e-3, 1e-3, 2e-3, 5.0]),  # mostly dead
              "2.weight": np.full((3, 6), 0.1), "2.bias": np.array([0.1, 0.2, 0.1])}
    assert lopsided_step(parameter_steps(honest, held), 30.0) == 1  # every layer: the hidden bias looks lopsided
    steps = output_layer_steps(honest, held)
    assert [list(s) for s in steps] == [pytest.approx([0.1] * 3), pytest.approx([0.1, 0.2, 0.1])]
    assert lopsided_step(steps, 30.0) is None
    cut = dict(honest, **{"2.bias": np.array([0.1, -4.0, 0.1])})  # class 1's output bias, 40 times the others
    assert lopsided_step(output_layer_steps(cut, held), 30.0) == 1
    assert output_layer_steps({"bias": np.zeros(3)}, {"bias": np.zeros(3)}) is None  # no matrix: no output layer
    assert output_layer_steps(honest, {"0.weight": np.zeros((6, 4))}) is None  # layouts differ


def test_the_neural_network_rule_checks_steps_tighter_than_robust():
    held = Evaluation(0.9, np.array(LABELS), LABELS)
    cut = Evaluation(0.9, np.array(LABELS), LABELS, steps=(np.array([0.1, 0.1, 4.0, 0.1]),))  # 40 times
    assert make_vote_rule("chance").vote(cut, held, VoteMemory()) is False
    assert Robust().vote(cut, held, VoteMemory()) is True
    assert make_vote_rule("chance", step_factor=50.0).vote(cut, held, VoteMemory()) is True


def test_robust_refuses_a_lopsided_step_and_the_check_can_be_switched_off():
    held = Evaluation(0.9, np.array(LABELS), LABELS)
    cut = Evaluation(0.9, np.array(LABELS), LABELS, steps=(np.array([0.1, 0.1, 30.0, 0.1]),))
    assert Robust().vote(cut, held, VoteMemory()) is False
    assert make_vote_rule("chance").vote(cut, held, VoteMemory()) is False
    assert Robust(step_factor=None).vote(cut, held, VoteMemory()) is True
    assert Robust(step_factor=1000.0).vote(cut, held, VoteMemory()) is True
