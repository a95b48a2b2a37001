"""KerasLearner: the MLI contract, 0.2.x compatibility, loaders, optimizer reset, export, missing TensorFlow."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the Keras learner needs TensorFlow (pip install 'colearn[keras]')")

import keras  # noqa: E402

from colearn.encoding import decode_weights, encode_weights  # noqa: E402
from colearn.learner_utils import WeightsMismatchError, vote_for  # noqa: E402
from colearn.ml_interface import (ModelFormat, OnnxUnavailableError, PredictionRequest, Weights,  # noqa: E402
                                  convert_model_to_onnx)
from colearn_keras.export import keras_model_from_bytes, keras_model_to_onnx  # noqa: E402
from colearn_keras.keras_learner import KerasLearner  # noqa: E402
from colearn_keras.utils import normalize_img  # noqa: E402


def blobs(n: int, seed: int, n_features: int = 4, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n).astype(np.int64)
    centres = np.random.default_rng(99).normal(0, 3, (n_classes, n_features))
    return (centres[y] + rng.normal(0, 1, (n, n_features))).astype(np.float32), y


def make_model(seed: int = 0, lr: float = 0.05) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_learner(seed: int = 0, **kwargs) -> KerasLearner:
    defaults = dict(model=make_model(seed), train_loader=blobs(64, seed), vote_loader=blobs(32, seed + 100),
                    test_loader=blobs(32, seed + 200), criterion="accuracy", minimise_criterion=False,
                    model_fit_kwargs={"epochs": 2, "batch_size": 16}, seed=seed)
    return KerasLearner(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def learner() -> KerasLearner:
    """One learner shared by tests that leave its held model as they found it."""
    return make_learner()


def current(learner: KerasLearner) -> list:
    return learner.mli_get_current_weights().weights


def same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


class EvaluateCounter:
    """Counts model.evaluate calls on one learner."""

    def __init__(self, learner: KerasLearner, monkeypatch):
        self.calls = 0
        original = learner.model.evaluate

        def counting(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(learner.model, "evaluate", counting)


# -- the contract -----------------------------------------------------------------------------------------
def test_weights_leave_as_numpy_copies_in_model_order(learner):
    weights = current(learner)
    assert isinstance(weights, list) and all(isinstance(w, np.ndarray) for w in weights)
    assert [w.shape for w in weights] == [tuple(v.shape) for v in learner.model.weights]
    weights[0] += 1.0
    assert not np.array_equal(current(learner)[0], weights[0])


def test_propose_trains_but_leaves_the_held_model_unchanged(learner):
    before = current(learner)
    proposal = learner.mli_propose_weights()
    assert same(current(learner), before)
    assert not same(proposal.weights, before)
    assert proposal.training_summary is None


def test_test_scores_votes_and_leaves_the_held_model_unchanged(learner):
    before = current(learner)
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert same(current(learner), before)
    assert verdict.criterion == "accuracy" and 0.0 <= verdict.vote_score <= 1.0
    assert verdict.vote == vote_for(verdict.vote_score, learner.vote_score, minimise=False)
    assert verdict.vote_score == learner.test(learner.vote_loader) or not same(proposal.weights, before)


def test_accept_adopts_the_weights_without_evaluating_again(monkeypatch):
    learner = make_learner(1)
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    counter = EvaluateCounter(learner, monkeypatch)
    learner.mli_accept_weights(proposal)
    assert counter.calls == 0
    assert same(current(learner), proposal.weights)
    assert learner.vote_score == verdict.vote_score and counter.calls == 0


def test_untested_weights_are_scored_once_when_first_needed(monkeypatch):
    learner = make_learner(2)
    proposal = learner.mli_propose_weights()
    counter = EvaluateCounter(learner, monkeypatch)
    learner.mli_accept_weights(proposal)  # e.g. the proposer adopting its own proposal
    assert counter.calls == 0
    verdict = learner.mli_test_weights(proposal)  # the driver scores the proposer's held model
    assert counter.calls == 2  # vote set and test set, once
    assert learner.vote_score == verdict.vote_score and verdict.vote is False  # a tie: 0.2.x's strict rule
    learner.mli_test_weights(proposal)
    assert counter.calls == 2  # same weights again: cached


def test_weights_survive_the_typed_encoding(learner):
    proposal = learner.mli_propose_weights()
    decoded = Weights(weights=decode_weights(encode_weights(proposal.weights)))
    assert same(learner.mli_test_weights(decoded).weights.weights, proposal.weights)


@pytest.mark.parametrize("mangle, message", [
    (lambda w: w[:-1], "expected 4 arrays"),
    (lambda w: [w[0].T] + w[1:], "shape"),
    (lambda w: [w[0].astype(np.float64)] + w[1:], "dtype float64"),
    (lambda w: [w[0].tolist()] + w[1:], "numpy array"),
    (lambda w: {"kernel": w[0]}, "list of 4 arrays"),
])
def test_mismatched_weights_are_refused_and_change_nothing(learner, mangle, message):
    before, score = current(learner), learner.vote_score
    bad = Weights(weights=mangle(current(learner)))
    for method in (learner.mli_test_weights, learner.mli_accept_weights, learner.set_weights):
        with pytest.raises(WeightsMismatchError, match=message):
            method(bad)
        assert same(current(learner), before) and learner.vote_score == score


def test_refused_weights_name_the_model_variable(learner):
    weights = current(learner)
    weights[1] = np.zeros(5, np.float32)
    with pytest.raises(WeightsMismatchError, match="bias"):
        learner.mli_test_weights(Weights(weights=weights))


def test_no_test_loader_reports_zero_as_in_0_2_x():
    learner = make_learner(3, test_loader=None)
    assert learner.mli_test_weights(learner.mli_get_current_weights()).test_score == 0.0


# -- constructor checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"model_fit_kwargs": {"epochz": 2}}, "'epochz' is not an argument of model.fit"),
    ({"model_evaluate_kwargs": {"stepz": 2}}, "'stepz' is not an argument of model.evaluate"),
    ({"model_fit_kwargs": {"x": 1}}, "'x' is set by the learner"),
    ({"model_evaluate_kwargs": {"return_dict": False}}, "'return_dict' is set by the learner"),
    ({"criterion": "f1"}, r"criterion 'f1' is not computed .* \['accuracy', 'loss'\]"),
    ({"train_loader": [1, 2, 3]}, "train_loader must be a tf.data.Dataset or an"),
    ({"vote_loader": (np.zeros((3, 4)), np.zeros(2))}, "vote_loader: x has 3 rows but y has 2"),
    ({"model_export": "pickle"}, "model_export"),
])
def test_bad_arguments_fail_at_construction_naming_them(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_learner(**kwargs)


def test_an_uncompiled_model_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="compile"):
        KerasLearner(model, blobs(8, 0), blobs(8, 1))


def test_loss_criterion_is_minimised_by_default():
    learner = make_learner(4, criterion="loss", minimise_criterion=True)
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert verdict.vote_score < learner.vote_score and verdict.vote is True


# -- loaders ----------------------------------------------------------------------------------------------
def test_datasets_and_array_pairs_give_the_same_scores():
    x, y = blobs(32, 100)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).map(lambda a, b: (a, b)).prefetch(2)
    train = tf.data.Dataset.from_tensor_slices(blobs(64, 0)).batch(16).prefetch(1)
    from_arrays = make_learner(5, vote_loader=(x, y), model_fit_kwargs=None)
    from_datasets = make_learner(5, train_loader=train, vote_loader=dataset, test_loader=None, model_fit_kwargs=None)
    assert from_datasets.vote_score == pytest.approx(from_arrays.vote_score)
    assert from_datasets.test(dataset) == pytest.approx(from_arrays.test((x, y)))
    assert from_datasets.get_train_batch_size() == 16 and from_arrays.get_train_batch_size() == 32
    assert not same(from_datasets.mli_propose_weights().weights, current(from_datasets))


def test_steps_per_epoch_repeats_array_loaders():
    learner = make_learner(6, model_fit_kwargs={"epochs": 1, "steps_per_epoch": 10, "batch_size": 16})
    learner.train()  # 10 batches from 64 rows: needs the array loader to repeat
    assert int(learner.model.optimizer.iterations.numpy()) == 10


def test_normalize_img_scales_uint8_to_unit_floats():
    image, label = normalize_img(tf.constant([[0, 51, 255]], tf.uint8), tf.constant(7))
    assert image.dtype == tf.float32
    np.testing.assert_allclose(image.numpy(), [[0.0, 0.2, 1.0]])
    assert int(label) == 7


# -- optimizer reset --------------------------------------------------------------------------------------
def test_reset_optimizer_restores_a_fresh_optimizer_without_recompiling():
    learner = make_learner(7)
    learner.mli_propose_weights()
    train_function, test_function = learner.model.train_function, learner.model.test_function
    optimizer = learner.model.optimizer
    assert int(optimizer.iterations.numpy()) > 0
    learner.reset_optimizer()
    fresh = type(optimizer).from_config(optimizer.get_config())
    fresh.build(learner.model.trainable_variables)
    assert same([v.numpy() for v in optimizer.variables], [v.numpy() for v in fresh.variables])
    learner.mli_test_weights(learner.mli_propose_weights())
    assert learner.model.train_function is train_function  # not recompiled: nothing retraced
    assert learner.model.test_function is test_function


def test_without_reset_the_optimizer_state_carries_over():
    learner = make_learner(8, need_reset_optimizer=False)
    learner.mli_propose_weights()
    steps = int(learner.model.optimizer.iterations.numpy())
    learner.mli_propose_weights()
    assert int(learner.model.optimizer.iterations.numpy()) == 2 * steps


def test_reset_follows_a_recompiled_model():
    learner = make_learner(9)
    learner.model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
    learner.mli_propose_weights()
    learner.reset_optimizer()
    assert all(not np.any(v.numpy()) for v in learner.model.optimizer.variables if "momentum" in v.path)


# -- determinism ------------------------------------------------------------------------------------------
def test_same_seed_same_proposals():
    first, second = make_learner(10), make_learner(10)
    for _ in range(2):
        assert same(first.mli_propose_weights().weights, second.mli_propose_weights().weights)


# -- export and prediction --------------------------------------------------------------------------------
def test_native_export_round_trips(learner):
    exported = make_learner(11, model_export="keras").mli_get_current_model()
    assert exported.model_format == ModelFormat.KERAS and isinstance(exported.model, bytes)
    restored = keras_model_from_bytes(exported.model)
    assert same(restored.get_weights(), make_learner(11).model.get_weights())


def test_onnx_without_tf2onnx_says_why(learner, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    for convert in (keras_model_to_onnx, convert_model_to_onnx):
        with pytest.raises(OnnxUnavailableError, match="tf2onnx"):
            convert(learner.model)
    onnx_learner = make_learner(12, model_export="onnx")
    with pytest.raises(OnnxUnavailableError, match="pip install tf2onnx"):
        onnx_learner.mli_get_current_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exported = learner.mli_get_current_model()
    assert exported.model_format == ModelFormat.KERAS
    assert any("ONNX export not possible" in str(w.message) for w in caught)


def test_prediction_returns_class_probabilities(learner):
    x, _ = blobs(5, 42)
    prediction = learner.mli_make_prediction(PredictionRequest(name="p", input_data=x))
    assert prediction.prediction_data.shape == (5, 3)
    np.testing.assert_allclose(prediction.prediction_data.sum(axis=1), 1.0, rtol=1e-5)


# -- imports ----------------------------------------------------------------------------------------------
def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_missing_tensorflow_gives_an_install_hint_not_a_deep_traceback():
    completed = run_python("import sys; sys.modules['tensorflow'] = None\n"
                           "import colearn\n"
                           "from colearn_keras.keras_learner import KerasLearner\n")
    assert completed.returncode != 0
    assert "ImportError: colearn_keras needs TensorFlow" in completed.stderr
    assert "pip install 'colearn[keras]'" in completed.stderr
    assert "During handling" not in completed.stderr and "keras_learner.py" not in completed.stderr


def test_importing_colearn_does_not_import_tensorflow():
    completed = run_python("import sys, colearn, colearn.registry, colearn.experiment\n"
                           "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False False"
