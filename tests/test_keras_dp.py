"""DP-SGD for Keras: the mechanism (clipping, noise, sampling), the accounting and the budget semantics."""
from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the Keras learner needs TensorFlow (pip install 'colearn[keras]')")
dp_accounting = pytest.importorskip("dp_accounting", reason="DP accounting needs dp-accounting")

import keras  # noqa: E402

from colearn.experiment import Experiment  # noqa: E402
from colearn.ml_interface import DiffPrivConfig, ErrorCodes  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn_keras.dp import (DPSGDTrainer, check_config, clip_gradients, per_example_gradients,  # noqa: E402
                              per_example_loss_fn, privatize)
from colearn_keras.keras_learner import KerasLearner  # noqa: E402


def blobs(n: int, seed: int, n_features: int = 4, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n).astype(np.int64)
    centres = np.random.default_rng(99).normal(0, 3, (n_classes, n_features))
    return (centres[y] + rng.normal(0, 1, (n, n_features))).astype(np.float32), y


def classifier(seed: int = 0, optimizer=None) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def config(epsilon: float = 10.0, noise: float = 1.0, clip: float = 1.0, delta: float = 1e-5) -> DiffPrivConfig:
    return DiffPrivConfig(target_epsilon=epsilon, target_delta=delta, max_grad_norm=clip, noise_multiplier=noise)


def dp_learner(seed: int = 0, dp: DiffPrivConfig = None, n_train: int = 64, **fit) -> KerasLearner:
    return KerasLearner(classifier(seed), blobs(n_train, seed), blobs(32, seed + 100), blobs(32, seed + 200),
                        criterion="accuracy", minimise_criterion=False,
                        model_fit_kwargs={"epochs": 1, "batch_size": 16, **fit},
                        diff_priv_config=dp or config(), seed=seed)


def direct_epsilon(sample_rate: float, noise: float, steps: int, delta: float) -> float:
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.PoissonSampledDpEvent(sample_rate, dp_accounting.GaussianDpEvent(noise)), steps)
    return accountant.get_epsilon(delta)


# -- the mechanism ----------------------------------------------------------------------------------------
def test_huge_clip_and_no_noise_is_the_plain_gradient():
    model = classifier(1)
    x, y = blobs(12, 1)
    loss_fn = per_example_loss_fn(model)
    dp_grads = privatize(per_example_gradients(model, loss_fn, x, y), 1e9, 0.0, float(len(x)), tf.constant([1, 2]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
    plain = tape.gradient(loss, model.trainable_variables)
    for got, want in zip(dp_grads, plain):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)


def test_huge_clip_and_no_noise_trains_exactly_like_plain_sgd():
    x, y = blobs(40, 2)
    private, plain = classifier(2), classifier(2)
    # batch_size = n makes the Poisson sample rate 1: every step sees the whole set, as full-batch SGD does
    DPSGDTrainer(private, x, y, config(noise=0.0, clip=1e9), batch_size=len(x), seed=0).run(5)
    plain.fit(x, y, batch_size=len(x), epochs=5, shuffle=False, verbose=0)
    for got, want in zip(private.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_per_example_gradients_are_clipped_to_the_bound():
    # a linear model with squared error: example i's gradient is 2 (w.x_i - y_i) x_i, its norm known exactly
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.array([[0.1, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, -1.0, 2.0], [0.0, 0.0, 0.01]], np.float32)
    y = np.array([[1.0], [-2.0], [5.0], [0.0]], np.float32)
    w = model.get_weights()[0][:, 0]
    expected = 2 * (x @ w - y[:, 0])[:, None] * x
    per_example = per_example_gradients(model, per_example_loss_fn(model), x, y)
    np.testing.assert_allclose(per_example[0].numpy()[:, :, 0], expected, rtol=1e-5, atol=1e-7)

    bound = 1.0
    clipped, norms = clip_gradients(per_example, bound)
    expected_norms = np.linalg.norm(expected, axis=1)
    np.testing.assert_allclose(norms.numpy(), expected_norms, rtol=1e-5)
    assert expected_norms.min() < bound < expected_norms.max()  # the toy has examples on both sides
    got = clipped[0].numpy()[:, :, 0]
    for row, original, norm in zip(got, expected, expected_norms):
        if norm <= bound:
            np.testing.assert_allclose(row, original, rtol=1e-6)  # untouched below the bound
        else:
            assert np.linalg.norm(row) == pytest.approx(bound, rel=1e-5)  # scaled to the bound...
            np.testing.assert_allclose(row / bound, original / norm, rtol=1e-5)  # ...in the same direction


def test_noise_has_the_configured_scale_and_follows_the_seed():
    variables = [tf.zeros((0, 200, 50))]  # no examples: the update is pure noise
    noise, clip, denominator = 1.3, 0.7, 4.0
    sample = privatize(variables, clip, noise, denominator, tf.constant([5, 6]))[0].numpy()
    assert sample.std() == pytest.approx(noise * clip / denominator, rel=0.03)
    assert abs(sample.mean()) < 0.01
    again = privatize(variables, clip, noise, denominator, tf.constant([5, 6]))[0].numpy()
    other = privatize(variables, clip, noise, denominator, tf.constant([5, 7]))[0].numpy()
    assert np.array_equal(sample, again) and not np.array_equal(sample, other)


def test_batches_are_poisson_samples():
    x, y = blobs(200, 4)
    trainer = DPSGDTrainer(classifier(4), x, y, config(), batch_size=20, seed=0)
    trainer.run(1)  # builds the step
    sizes = []
    step = trainer._step

    def recording(xb, yb, seed):
        sizes.append(len(xb))
        return step(xb, yb, seed)

    trainer._step = recording
    trainer.run(300)
    assert trainer.sample_rate == pytest.approx(0.1)
    assert np.mean(sizes) == pytest.approx(20, rel=0.05)
    assert np.std(sizes) == pytest.approx(math.sqrt(200 * 0.1 * 0.9), rel=0.2)  # binomial, not a fixed size


def test_empty_poisson_samples_still_take_a_noisy_step():
    x, y = blobs(50, 5)
    model = classifier(5)
    before = model.get_weights()
    trainer = DPSGDTrainer(model, x, y, config(), batch_size=1, seed=0)
    trainer.sample_rate = 1e-9  # force empty samples
    trainer.run(1)
    assert trainer.ledger.steps == 1
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# -- accounting and budget ------------------------------------------------------------------------------
def test_reported_epsilon_is_dp_accounting_for_the_steps_taken():
    learner = dp_learner(6, config(epsilon=50.0, noise=1.1, delta=1e-4), n_train=64, epochs=2)
    for proposals in (1, 2, 3):
        budget = learner.mli_propose_weights().training_summary.dp_budget
        steps = proposals * 2 * math.ceil(64 / 16)
        assert budget.consumed_epsilon == pytest.approx(direct_epsilon(16 / 64, 1.1, steps, 1e-4), rel=1e-9)
        assert budget.consumed_delta == 1e-4 and budget.target_epsilon == 50.0
    assert learner.privacy_budget() == budget == learner.diff_priv_budget
    assert learner.get_privacy_budget() == pytest.approx(direct_epsilon(16 / 64, 1.1, 4 * 2 * math.ceil(64 / 16), 1e-4))


def budget_between(proposals: int, noise: float, per_proposal: int, delta: float = 1e-5) -> float:
    """A target epsilon that allows exactly ``proposals`` proposals (halfway to what one more would spend)."""
    return (direct_epsilon(16 / 64, noise, proposals * per_proposal, delta)
            + direct_epsilon(16 / 64, noise, (proposals + 1) * per_proposal, delta)) / 2


def test_proposing_stops_once_the_next_proposal_would_exceed_the_budget():
    per_proposal = math.ceil(64 / 16)
    target = budget_between(3, 2.0, per_proposal)
    learner = dp_learner(7, config(epsilon=target, noise=2.0))
    spent = []
    for _ in range(3):
        proposal = learner.mli_propose_weights()
        assert proposal.training_summary.error_code is None
        spent.append(proposal.training_summary.dp_budget.consumed_epsilon)
    assert spent == sorted(spent) and spent[-1] <= target
    held = learner.mli_get_current_weights().weights
    for _ in range(2):
        refused = learner.mli_propose_weights()
        assert refused.training_summary.error_code == ErrorCodes.DP_BUDGET_EXCEEDED
        assert refused.training_summary.dp_budget.consumed_epsilon == spent[-1]  # nothing more was spent
        assert all(np.array_equal(a, b) for a, b in zip(refused.weights, held))


def test_the_driver_records_budgets_and_stops_selecting_spent_learners():
    target = budget_between(1, 2.0, math.ceil(64 / 16))
    learners = [dp_learner(10 + i, config(epsilon=target, noise=2.0)) for i in range(3)]
    experiment = Experiment(learners, ProtocolConfig())
    results = experiment.run(8)
    assert [r.proposer for r in results.rounds] == [0, 1, 2, 0, 1, 2, None, None]
    assert [r.proposer_error for r in results.rounds[3:6]] == ["DP_BUDGET_EXCEEDED"] * 3
    assert experiment.exhausted == {0, 1, 2}
    assert all(0 < b.consumed_epsilon <= target for b in results.rounds[-1].dp_budgets)


def test_same_seed_same_private_proposals():
    first, second = dp_learner(8), dp_learner(8)
    a, b = first.mli_propose_weights().weights, second.mli_propose_weights().weights
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    third = dp_learner(9)
    third.model.set_weights(first.model.get_weights())
    assert not all(np.array_equal(p, q) for p, q in zip(a, third.mli_propose_weights().weights))


def test_a_batched_dataset_is_materialised_for_sampling():
    x, y = blobs(48, 11)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(12).prefetch(1)
    learner = KerasLearner(classifier(11), train, blobs(16, 12), diff_priv_config=config(), model_fit_kwargs={},
                           seed=0)
    assert learner.get_train_batch_size() == 12 and learner._dp.n == 48
    assert learner.dp_steps_per_proposal == 4
    assert learner.mli_propose_weights().training_summary.dp_budget.consumed_epsilon > 0


# -- refusals ---------------------------------------------------------------------------------------------
def test_batch_normalization_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="BatchNormalization"):
        KerasLearner(model, blobs(16, 0), blobs(16, 1), diff_priv_config=config())


@pytest.mark.parametrize("fit, message", [({"callbacks": []}, "callbacks"),
                                          ({"class_weight": {0: 1.0}}, "class_weight")])
def test_fit_arguments_dp_cannot_honour_are_refused(fit, message):
    with pytest.raises(ValueError, match=f"{message}.*not supported with diff_priv_config"):
        dp_learner(0, **fit)


@pytest.mark.parametrize("field, value", [("max_grad_norm", 0.0), ("target_epsilon", -1.0), ("target_delta", 1.5),
                                          ("noise_multiplier", -0.1), ("max_grad_norm", math.inf)])
def test_invalid_dp_settings_name_the_field(field, value):
    settings = config().model_dump()
    settings[field] = value
    with pytest.raises(ValueError, match=f"diff_priv_config.{field}"):
        check_config(DiffPrivConfig(**settings))
