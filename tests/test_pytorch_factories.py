"""torch-mlp / torch-cnn factories: registry, determinism, shapes, settings, and the digits benchmark bar."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch learners need torch (pip install 'colearn[pytorch]')")

from colearn.data.splits import split_learner_data  # noqa: E402
from colearn.data.tasks import load_task  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.ml_interface import DiffPrivConfig  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.registry import make_learner  # noqa: E402
from colearn_pytorch.factories import dp_config, image_chw, make_cnn_learner, make_mlp_learner  # noqa: E402
from tests.test_pytorch_learner import same  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on two contended ones (CI has two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_data():
    return split_learner_data(load_task("digits"), 5, seed=0)


@pytest.mark.parametrize("name", ["torch-mlp", "torch-cnn"])
def test_registered_factories_build_working_learners(digits_data, name):
    learner = make_learner(name, digits_data[0], seed=1, epochs=1)
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert 0.0 <= verdict.test_score <= 1.0 and verdict.criterion == "categorical_accuracy"


@pytest.mark.parametrize("factory", [make_mlp_learner, make_cnn_learner])
def test_same_seed_same_learner_different_seed_different(digits_data, factory):
    a, b, c = (factory(digits_data[0], seed=s, epochs=1) for s in (5, 5, 6))
    assert same(a.mli_get_current_weights().weights, b.mli_get_current_weights().weights)
    assert not same(a.mli_get_current_weights().weights, c.mli_get_current_weights().weights)
    assert same(a.mli_propose_weights().weights, b.mli_propose_weights().weights)
    shared = factory(digits_data[1], seed=9, init_seed=5, epochs=1)  # a common start, other batches
    assert same(a.mli_get_current_weights().weights, shared.mli_get_current_weights().weights)


def test_cnn_reshapes_rows_with_the_image_shape(digits_data):
    data = digits_data[0]
    assert image_chw(data) == (1, 8, 8)
    learner = make_cnn_learner(data, seed=0)
    convs = [m for m in learner.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and convs[0].in_channels == 1
    rows = torch.as_tensor(data.x_test[:3])
    assert learner.model(rows).shape == (3, data.n_classes)


def test_image_shape_must_describe_the_features(digits_data):
    from dataclasses import replace

    with pytest.raises(ValueError, match="image_shape"):
        image_chw(replace(digits_data[0], image_shape=(7, 7)))
    assert image_chw(replace(digits_data[0], image_shape=None)) == (1, 8, 8)  # a square is inferred


def test_settings_are_checked_by_name(digits_data):
    data = digits_data[0]
    for bad, name in ((dict(lr=0), "lr"), (dict(epochs=-1), "epochs"), (dict(metric="f1"), "metric"),
                      (dict(optimizer="lbfgs"), "optimizer"), (dict(label_smoothing=1.0), "label_smoothing"),
                      (dict(dp={"epsilon": 3}), "target_epsilon"),
                      (dict(dp={"target_epsilon": 3, "sigma": 1}), "sigma"), (dict(threads=0), "threads")):
        with pytest.raises(ValueError, match=name):
            make_mlp_learner(data, seed=0, **bad)
    with pytest.raises(TypeError, match="hiden"):
        make_mlp_learner(data, seed=0, hiden=(3,))


def test_batches_per_proposal_and_epochs_set_the_training_length(digits_data):
    data = digits_data[0]
    n_batches = int(np.ceil(len(data.y_train) / 32))
    assert make_mlp_learner(data, seed=0, epochs=3).num_train_batches == 3 * n_batches
    assert make_mlp_learner(data, seed=0, batches_per_proposal=5).num_train_batches == 5


def test_threads_setting_sets_torch_threads(digits_data, one_thread):
    torch.set_num_threads(2)
    make_mlp_learner(digits_data[0], seed=0, threads=1)
    assert torch.get_num_threads() == 1


def test_dp_settings_become_a_config(digits_data):
    assert dp_config({"target_epsilon": 3}) == DiffPrivConfig(target_epsilon=3, target_delta=1e-5,
                                                              max_grad_norm=1.0, noise_multiplier=1.0)
    learner = make_mlp_learner(digits_data[0], seed=0, dp={"target_epsilon": 3, "noise_multiplier": 1.5})
    assert learner.dp is not None and learner.dp.config.noise_multiplier == 1.5
    assert learner.mli_propose_weights().training_summary.dp_budget.consumed_epsilon > 0


def test_same_seed_same_experiment(digits_data, one_thread):
    def run():
        learners = [make_cnn_learner(data, seed=i, batches_per_proposal=3) for i, data in enumerate(digits_data[:3])]
        rounds = Experiment(learners, ProtocolConfig()).run(3).rounds
        return [(r.proposer, r.accepted, r.votes, r.proposal_vote_scores, r.held_test_scores) for r in rounds]

    assert run() == run()


@pytest.mark.slow
def test_digits_five_iid_learners_twenty_rounds_reach_095(digits_data, one_thread):
    """The issue's bar (accuracy only: speed is measured by examples/pytorch_digits.py, not in tests)."""
    learners = [make_mlp_learner(data, seed=i) for i, data in enumerate(digits_data)]
    results = Experiment(learners, ProtocolConfig()).run(20)
    final = results.rounds[-1].held_test_scores
    assert all(score is not None for score in final)
    assert np.mean(final) >= 0.95


def test_torch_mlp_voters_refuse_an_output_bias_cut_twenty_times_the_median_step():
    """torch-mlp's step factor is 15 (honest proposals stay under 10.4); the generic "chance" rule's 30 lets a cut
    of 20 median steps through, which is the room a class-cut attacker used to take."""
    from colearn.data import load_task, split_learner_data
    from colearn.registry import make_learner

    datas = split_learner_data(load_task("digits"), 5, seed=0)
    proposer = make_learner("torch-mlp", datas[1], seed=1)
    honest = proposer.mli_propose_weights()
    start = make_learner("torch-mlp", datas[0], seed=0).mli_get_current_weights().weights
    step = (honest.weights["2.bias"] - start["2.bias"]).abs()
    cut = {key: value.clone() for key, value in honest.weights.items()}
    cut["2.bias"][1] -= 20 * float(step[step > 0].median())
    for rule, honest_vote, cut_vote in ((None, True, False), ("chance", True, True)):
        voter = make_learner("torch-mlp", datas[0], seed=0, **({"vote_rule": rule} if rule else {}))
        assert voter.mli_test_weights(honest).vote is honest_vote
        assert voter.mli_test_weights(type(honest)(weights=cut)).vote is cut_vote
