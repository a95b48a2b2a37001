"""Differentially private PytorchLearner: budget reporting, stopping at the target, plain weight names."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch learner needs torch (pip install 'colearn[pytorch]')")
pytest.importorskip("opacus", reason="differential privacy needs opacus (pip install 'colearn[pytorch]')")

from colearn.encoding import decode_weights, encode_weights  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.ml_interface import DiffPrivConfig, ErrorCodes  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from tests.test_pytorch_learner import make_learner, same  # noqa: E402


def dp_learner(seed: int = 0, target_epsilon: float = 8.0, **kwargs):
    config = DiffPrivConfig(target_epsilon=target_epsilon, target_delta=1e-5, max_grad_norm=1.0,
                            noise_multiplier=1.0)
    return make_learner(seed, diff_priv_config=config, **kwargs)


def test_weights_leave_with_the_plain_model_names():
    learner = dp_learner()
    assert learner.model is not learner.plain_model  # opacus wrapped it ...
    assert all(k.startswith("_module.") for k in learner.model.state_dict())
    names = list(learner.mli_propose_weights().weights)
    assert names == list(learner.plain_model.state_dict()) and not any("_module" in n for n in names)
    plain = make_learner(1)  # ... so a non-DP learner with the same model accepts DP weights and vice versa
    plain.mli_accept_weights(learner.mli_propose_weights())
    learner.mli_accept_weights(plain.mli_get_current_weights())
    assert same(learner.mli_get_current_weights().weights, plain.mli_get_current_weights().weights)


def test_budget_grows_per_proposal_and_proposals_stop_before_exceeding_it():
    learner = dp_learner(target_epsilon=6.0, num_train_batches=2)
    spent, n_proposals = [], 0
    while n_proposals < 50:
        held = learner.mli_get_current_weights().weights
        proposal = learner.mli_propose_weights()
        summary = proposal.training_summary
        assert summary.dp_budget.target_epsilon == 6.0 and summary.dp_budget.target_delta == 1e-5
        if summary.error_code is not None:
            break
        n_proposals += 1
        spent.append(summary.dp_budget.consumed_epsilon)
    assert summary.error_code == ErrorCodes.DP_BUDGET_EXCEEDED
    assert same(proposal.weights, held)  # the refusal carries the held weights, untrained
    assert n_proposals >= 2 and all(b > a for a, b in zip(spent, spent[1:]))
    assert spent[-1] <= 6.0  # never past the target ...
    assert learner.dp.predicted_epsilon(learner.num_train_batches) > 6.0  # ... and one more would be
    assert summary.dp_budget.consumed_epsilon == spent[-1]  # refusing spends nothing
    again = learner.mli_propose_weights()  # and it keeps refusing
    assert again.training_summary.error_code == ErrorCodes.DP_BUDGET_EXCEEDED
    assert again.training_summary.dp_budget.consumed_epsilon == spent[-1]


def test_prediction_matches_what_training_then_spends():
    learner = dp_learner(target_epsilon=50.0, num_train_batches=3)
    learner.mli_propose_weights()
    predicted = learner.dp.predicted_epsilon(3)
    assert predicted > learner.dp.consumed_epsilon()
    learner.mli_propose_weights()
    assert learner.dp.consumed_epsilon() == pytest.approx(predicted, rel=1e-9)
    assert learner.dp.steps == 6
    opacus_says = learner.dp.engine.accountant.get_epsilon(delta=1e-5)  # opacus' own (slow) computation
    assert learner.dp.consumed_epsilon() == pytest.approx(opacus_says, rel=1e-9)


def test_dp_proposals_encode_and_are_seeded():
    first = dp_learner(seed=3).mli_propose_weights()
    second = dp_learner(seed=3).mli_propose_weights()
    assert same(first.weights, second.weights)  # Poisson sampling and noise are seeded too
    decoded = decode_weights(encode_weights(first.weights))
    assert list(decoded) == list(first.weights)


def test_invalid_dp_config_names_the_field():
    with pytest.raises(ValueError, match="noise_multiplier"):
        make_learner(diff_priv_config=DiffPrivConfig(target_epsilon=1.0, target_delta=1e-5, max_grad_norm=1.0,
                                                     noise_multiplier=0.0))


@pytest.mark.slow
def test_experiment_records_spent_budgets_and_excludes_exhausted_learners():
    learners = [dp_learner(seed=i, target_epsilon=4.0, num_train_batches=2) for i in range(3)]
    results = Experiment(learners, ProtocolConfig()).run(30)
    refusals = [r for r in results.rounds if r.proposer_error == "DP_BUDGET_EXCEEDED"]
    assert len(refusals) == 3  # each learner says so once, then is never asked again
    assert len({r.proposer for r in refusals}) == 3
    last = results.rounds[-1]
    assert last.proposer is None and "DP budgets" in last.proposer_error
    for budget in last.dp_budgets:
        assert 0 < budget.consumed_epsilon <= budget.target_epsilon == 4.0
    assert np.isfinite([s for s in last.held_test_scores if s is not None]).all()
