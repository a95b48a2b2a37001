"""Keras learners on label-skewed data: the restricted-softmax training loss (FedRS), the vote evidence the learner
gives its rule (vote-set predictions, output-layer steps) and voting on plain cross-entropy with metric="loss"."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the Keras learner needs TensorFlow (pip install 'colearn[keras]')")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from colearn.data.splits import split_learner_data  # noqa: E402
from colearn.data.tasks import load_task  # noqa: E402
from colearn.data.types import LearnerData  # noqa: E402
from colearn.ml_interface import Weights  # noqa: E402
from colearn.vote_rules import make_vote_rule  # noqa: E402
from colearn_keras.factories import make_mlp_learner  # noqa: E402
from colearn_keras.keras_learner import output_units_first  # noqa: E402
from colearn_keras.losses import RestrictedSparseCrossentropy, kept_classes, training_loss  # noqa: E402

ABSENT = 9  # the class left out of the learner's training data


@pytest.fixture(scope="module")
def digits() -> LearnerData:
    return split_learner_data(load_task("digits"), 3, seed=0)[0]


@pytest.fixture(scope="module")
def skewed(digits) -> LearnerData:
    """``digits`` without a single training sample of class ABSENT (vote and test sets keep it)."""
    keep = digits.y_train != ABSENT
    return LearnerData(digits.x_train[keep], digits.y_train[keep], digits.x_vote, digits.y_vote, digits.x_test,
                       digits.y_test, digits.n_classes, digits.image_shape)


def softmax_model(n_features: int = 6, n_classes: int = 5) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(n_classes, activation="softmax")])


def gradients(model: keras.Model, loss: keras.losses.Loss, x: np.ndarray, y: np.ndarray) -> list:
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss.call(tf.constant(y), model(x, training=True)))
    return [g.numpy() for g in tape.gradient(value, model.trainable_variables)]


# -- the loss ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_restricted_loss_gives_left_out_output_units_no_gradient(smoothing):
    model = softmax_model()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, 16)
    kernel, bias = gradients(model, RestrictedSparseCrossentropy([0, 1, 2], 5, smoothing), x, y)
    assert np.all(kernel[:, 3:] == 0) and np.all(bias[3:] == 0)  # exactly: Adam would amplify a tiny gradient
    assert np.all(np.abs(kernel[:, :3]).max(axis=0) > 1e-4) and np.all(np.abs(bias[:3]) > 1e-6)
    plain_kernel, _ = gradients(model, keras.losses.SparseCategoricalCrossentropy(), x, y)
    assert np.all(np.abs(plain_kernel[:, 3:]).max(axis=0) > 1e-4)  # plain cross-entropy pushes them down


def test_restricted_loss_is_cross_entropy_renormalised_over_kept_classes():
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]], dtype="float32")
    labels = np.array([1, 0])
    loss = RestrictedSparseCrossentropy([0, 1], 4)
    expected = [-np.log(0.2 / 0.3), -np.log(0.5)]
    assert np.allclose(loss.call(labels, tf.constant(probabilities)).numpy(), expected, atol=1e-5)
    every_class = RestrictedSparseCrossentropy(range(4), 4)
    plain = keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy()
    assert np.allclose(every_class.call(labels, tf.constant(probabilities)).numpy(), plain, atol=1e-5)
    assert loss.call(np.array([3]), tf.constant(probabilities[:1])).numpy()[0] == 0  # a left-out class's sample


def test_rare_classes_are_left_out_and_absent_ones_too():
    labels = [0] * 60 + [1] * 39 + [2]
    assert kept_classes(labels, 4, 0.02) == [0, 1]
    assert kept_classes(labels, 4, 0.0) == [0, 1, 2]
    assert isinstance(training_loss(labels, 4, None, 0.0), str)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, "0.1", True])
def test_bad_rare_fractions_are_refused_by_name(digits, fraction):
    with pytest.raises(ValueError, match="rare_fraction"):
        RestrictedSparseCrossentropy.from_labels(digits.y_train, digits.n_classes, fraction)
    with pytest.raises(ValueError, match="rare_class_fraction"):
        make_mlp_learner(digits, seed=0, epochs=1, rare_class_fraction=fraction)


def test_restricted_loss_survives_native_export(skewed):
    from colearn_keras.export import keras_model_from_bytes

    learner = make_mlp_learner(skewed, seed=0, epochs=1, model_export="keras")
    restored = keras_model_from_bytes(learner.mli_get_current_model().model).loss
    assert isinstance(restored, RestrictedSparseCrossentropy) and ABSENT not in restored.kept


# -- the learner ------------------------------------------------------------------------------------------
def test_a_proposal_leaves_the_output_unit_of_an_absent_class_where_it_was(skewed):
    learner = make_mlp_learner(skewed, seed=0, epochs=1)
    held, proposal = learner.mli_get_current_weights().weights, learner.mli_propose_weights().weights
    assert np.array_equal(proposal[-1][ABSENT], held[-1][ABSENT])  # output bias
    assert np.array_equal(proposal[-2][:, ABSENT], held[-2][:, ABSENT])  # output kernel column
    assert not np.array_equal(proposal[-1][0], held[-1][0])

    plain = make_mlp_learner(skewed, seed=0, epochs=1, rare_class_fraction=None)
    held, proposal = plain.mli_get_current_weights().weights, plain.mli_propose_weights().weights
    assert not np.array_equal(proposal[-1][ABSENT], held[-1][ABSENT])
    assert not np.array_equal(proposal[-2][:, ABSENT], held[-2][:, ABSENT])


def test_the_rule_sees_vote_set_predictions_and_output_layer_steps(digits, monkeypatch):
    learner = make_mlp_learner(digits, seed=0, epochs=1)
    seen = []
    original = learner.voter.vote
    monkeypatch.setattr(learner.voter, "vote", lambda proposal, held: seen.append((proposal, held)) or
                        original(proposal, held))
    proposal = learner.mli_propose_weights()
    learner.mli_test_weights(proposal)
    new, held = seen[-1]
    outputs = learner.model.predict_on_batch(digits.x_vote)
    assert np.array_equal(held.predictions, outputs.argmax(axis=1)) and np.array_equal(held.labels, digits.y_vote)
    assert len(new.predictions) == len(digits.y_vote) and not np.array_equal(new.predictions, held.predictions)
    kernel_steps, bias_steps = new.steps  # the output layer only, one step per class
    moved = np.abs(proposal.weights[-2] - learner.mli_get_current_weights().weights[-2]).max(axis=0)
    assert np.allclose(kernel_steps, moved) and bias_steps.shape == (digits.n_classes,)


def test_output_units_first_puts_a_kernels_units_in_rows():
    arrays = [np.zeros((3, 4)), np.zeros(4), np.zeros((2, 2, 1, 8))]
    assert [a.shape for a in output_units_first(arrays).values()] == [(4, 3), (4,), (8, 2, 2, 1)]


def test_a_class_cut_by_a_hundred_times_the_other_steps_is_refused(digits):
    learner = make_mlp_learner(digits, seed=0, epochs=2)
    no_step_check = make_mlp_learner(digits, seed=0, epochs=2, vote_rule=make_vote_rule("chance", step_factor=None))
    honest = learner.mli_propose_weights()
    assert learner.mli_test_weights(honest).vote is True
    held = learner.mli_get_current_weights().weights
    steps = np.abs(honest.weights[-1] - held[-1])
    cut = [np.array(a, copy=True) for a in honest.weights]
    cut[-1][3] = held[-1][3] - 100 * np.median(steps)
    assert learner.mli_test_weights(Weights(weights=cut)).vote is False
    assert no_step_check.mli_test_weights(Weights(weights=cut)).vote is True  # it is the step evidence that refuses


def test_voting_on_loss_uses_plain_cross_entropy_over_every_class(skewed):
    learner = make_mlp_learner(skewed, seed=0, epochs=1, metric="loss")
    assert learner.minimise_criterion and isinstance(learner.model.loss, RestrictedSparseCrossentropy)
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    held = learner.mli_get_current_weights().weights
    learner.model.set_weights(proposal.weights)
    try:
        outputs = learner.model.predict_on_batch(skewed.x_vote)
        restricted = float(np.mean(learner.model.loss.call(skewed.y_vote, tf.constant(outputs)).numpy()))
    finally:
        learner.model.set_weights(held)
    plain = float(np.mean(keras.losses.sparse_categorical_crossentropy(skewed.y_vote, outputs).numpy()))
    assert verdict.vote_score == pytest.approx(plain, rel=1e-4)
    assert abs(plain - restricted) > 1e-3


class Batches(keras.utils.PyDataset):
    """(x, y) batches of arrays, as a 0.2.x-style ``Sequence`` loader."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)

    def __getitem__(self, index: int):
        part = slice(index * self.size, (index + 1) * self.size)
        return self.x[part], self.y[part]


@pytest.mark.parametrize("steps", [None, 1])
def test_a_pydataset_vote_loader_gives_predictions_over_the_scored_batches(digits, steps):
    from colearn_keras.keras_learner import KerasLearner

    model = softmax_model(digits.n_features, digits.n_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    learner = KerasLearner(model, (digits.x_train, digits.y_train), Batches(digits.x_vote, digits.y_vote, 16),
                           criterion="accuracy", minimise_criterion=False, model_fit_kwargs={"epochs": 1},
                           model_evaluate_kwargs=None if steps is None else {"steps": steps}, vote_rule="chance")
    predictions, labels = learner._held_predictions
    expected = digits.y_vote if steps is None else digits.y_vote[:16]
    assert np.array_equal(labels, expected) and len(predictions) == len(expected)
    verdict = learner.mli_test_weights(learner.mli_propose_weights())
    assert isinstance(verdict.vote, bool)


def test_vote_set_predictions_are_computed_once_per_weights(digits, monkeypatch):
    learner = make_mlp_learner(digits, seed=0, epochs=1, eval_batch_size=4096)  # the vote set in one batch
    calls = []
    original = learner.model.predict_on_batch
    monkeypatch.setattr(learner.model, "predict_on_batch", lambda x: calls.append(len(x)) or original(x))
    proposal = learner.mli_propose_weights()
    first = learner.mli_test_weights(proposal)
    assert calls == [len(digits.y_vote)]
    again = learner.mli_test_weights(proposal)
    learner.mli_accept_weights(proposal)
    assert calls == [len(digits.y_vote)] and again.vote == first.vote  # cached, also for the held model's evidence
    assert np.array_equal(learner._held_predictions[1], digits.y_vote)
