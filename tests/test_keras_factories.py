"""The registered Keras factories (keras-mlp, keras-cnn): building by name, parameters, determinism, a short run."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the Keras learner needs TensorFlow (pip install 'colearn[keras]')")

import keras  # noqa: E402

from colearn.data.splits import split_learner_data  # noqa: E402
from colearn.data.tasks import load_task  # noqa: E402
from colearn.data.types import LearnerData  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.ml_interface import DiffPrivConfig  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.registry import make_learner  # noqa: E402
from colearn_keras.factories import (RestrictedSparseCrossentropy, SmoothedSparseCrossentropy,  # noqa: E402
                                     dp_config, make_cnn_learner, make_mlp_learner)
from colearn_keras.keras_learner import KerasLearner  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> list[LearnerData]:
    return split_learner_data(load_task("digits"), 3, seed=0)


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["keras-mlp", "keras-cnn"])
def test_registry_builds_working_keras_learners(digits, name):
    learner = make_learner(name, digits[0], seed=0, epochs=1)
    assert isinstance(learner, KerasLearner) and learner.criterion == "accuracy"
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert 0.0 <= verdict.test_score <= 1.0 and isinstance(verdict.vote, bool)


def test_cnn_sees_rows_as_8x8x1_images(digits):
    learner = make_cnn_learner(digits[0], seed=0, epochs=1)
    reshape = learner.model.layers[0]
    assert isinstance(reshape, keras.layers.Reshape) and tuple(reshape.target_shape) == (8, 8, 1)
    assert learner.model.layers[1].output.shape[1:3] == (8, 8)


def test_cnn_needs_an_image_shape(digits):
    flat = LearnerData(*[getattr(digits[0], f) for f in ("x_train", "y_train", "x_vote", "y_vote", "x_test",
                                                         "y_test")], n_classes=10, image_shape=None)
    with pytest.raises(ValueError, match="image_shape"):
        make_cnn_learner(flat, seed=0)


def test_same_seed_same_model_and_proposal(digits):
    first, second = (make_mlp_learner(digits[0], seed=5, epochs=1) for _ in range(2))
    assert same(first.mli_get_current_weights().weights, second.mli_get_current_weights().weights)
    assert same(first.mli_propose_weights().weights, second.mli_propose_weights().weights)
    other = make_mlp_learner(digits[0], seed=6, epochs=1)
    assert not same(first.mli_get_current_weights().weights, other.mli_get_current_weights().weights)


def test_init_seed_gives_a_common_start(digits):
    a = make_mlp_learner(digits[0], seed=1, init_seed=0, epochs=1)
    b = make_mlp_learner(digits[1], seed=2, init_seed=0, epochs=1)
    assert same(a.mli_get_current_weights().weights, b.mli_get_current_weights().weights)


def test_parameters_reach_the_model(digits):
    learner = make_mlp_learner(digits[0], seed=0, hidden=(7, 5), lr=0.123, optimizer="sgd", metric="loss",
                               batches_per_proposal=3, batch_size=8, label_smoothing=0.2)
    assert [layer.units for layer in learner.model.layers] == [7, 5, 10]
    assert isinstance(learner.model.optimizer, keras.optimizers.SGD)
    assert float(learner.model.optimizer.learning_rate.numpy()) == pytest.approx(0.123)
    assert learner.criterion == "cross_entropy" and learner.minimise_criterion  # plain cross-entropy, every class
    assert isinstance(learner.model.loss, RestrictedSparseCrossentropy) and learner.model.loss.label_smoothing == 0.2
    learner.train()
    assert int(learner.model.optimizer.iterations.numpy()) == 3
    plain = make_mlp_learner(digits[0], seed=0, epochs=1, label_smoothing=0.2, rare_class_fraction=None)
    assert isinstance(plain.model.loss, SmoothedSparseCrossentropy) and plain.model.loss.label_smoothing == 0.2


@pytest.mark.parametrize("make", [make_mlp_learner, make_cnn_learner])
def test_ten_epochs_per_proposal_by_default_one_with_dp(digits, make):
    assert make(digits[0], seed=0).epochs_per_proposal == 10
    assert make(digits[0], seed=0, dp={"target_epsilon": 5.0}).epochs_per_proposal == 1
    assert make(digits[0], seed=0, epochs=3).epochs_per_proposal == 3


@pytest.mark.parametrize("params, message", [
    ({"lr": 0}, "lr must be a positive number"),
    ({"metric": "f1"}, "metric must be 'accuracy' or 'loss'"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"rare_class_fraction": 1.0}, "rare_class_fraction"),
    ({"dp": {"noise_multiplier": 1.0}}, "target_epsilon"),
    ({"dp": {"target_epsilon": 1.0, "sigma": 1.0}}, "unknown settings"),
])
def test_bad_parameters_are_refused_by_name(digits, params, message):
    with pytest.raises(ValueError, match=message):
        make_mlp_learner(digits[0], seed=0, **params)


def test_dp_settings_as_for_torch(digits):
    assert dp_config({"target_epsilon": 3.0}) == DiffPrivConfig(target_epsilon=3.0, target_delta=1e-5,
                                                                max_grad_norm=1.0, noise_multiplier=1.0)
    learner = make_mlp_learner(digits[0], seed=0, epochs=1, dp={"target_epsilon": 5.0, "noise_multiplier": 1.5})
    budget = learner.mli_propose_weights().training_summary.dp_budget
    assert budget.target_epsilon == 5.0 and 0 < budget.consumed_epsilon <= 5.0


def test_smoothed_loss_survives_native_export(digits):
    from colearn_keras.export import keras_model_from_bytes

    learner = make_mlp_learner(digits[0], seed=0, epochs=1, label_smoothing=0.1, model_export="keras")
    restored = keras_model_from_bytes(learner.mli_get_current_model().model)
    assert restored.loss.label_smoothing == pytest.approx(0.1)


@pytest.mark.slow
def test_a_short_experiment_learns(digits):
    learners = [make_mlp_learner(data, seed=i, epochs=2) for i, data in enumerate(digits)]
    results = Experiment(learners, ProtocolConfig()).run(4)
    assert sum(r.accepted for r in results.rounds) >= 2
    assert np.mean(results.rounds[-1].held_test_scores) > np.mean(results.initial_test_scores) + 0.3
