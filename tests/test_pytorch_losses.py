"""The restricted softmax: a learner does not push down the classes it holds (almost) no sample of."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch learner needs torch (pip install 'colearn[pytorch]')")

from colearn import Experiment, ProtocolConfig  # noqa: E402
from colearn.data import load_task, split_learner_data  # noqa: E402
from colearn.data.types import LearnerData  # noqa: E402
from colearn.registry import make_learner  # noqa: E402
from colearn.runner import learner_seed  # noqa: E402
from colearn_pytorch.factories import make_mlp_learner  # noqa: E402
from colearn_pytorch.losses import RestrictedSoftmaxLoss  # noqa: E402


def test_rare_and_absent_classes_are_left_out_of_the_training_softmax():
    labels = [0] * 60 + [1] * 39 + [2]  # class 2: 1 of 100, under 2%; class 3: none
    loss = RestrictedSoftmaxLoss(labels, 4, rare_fraction=0.02)
    assert loss.kept_classes == [0, 1]
    assert RestrictedSoftmaxLoss(labels, 4, rare_fraction=0.0).kept_classes == [0, 1, 2]
    logits = torch.zeros(2, 4, requires_grad=True)
    loss(logits, torch.tensor([0, 1])).backward()
    assert torch.all(logits.grad[:, 2:] == 0) and torch.all(logits.grad[:, :2] != 0)
    with pytest.raises(ValueError, match="rare_fraction"):
        RestrictedSoftmaxLoss(labels, 4, rare_fraction=1.0)
    with pytest.raises(ValueError, match="n_classes"):
        RestrictedSoftmaxLoss(labels, 2)


def _without_class(data: LearnerData, label: int) -> LearnerData:
    keep = data.y_train != label
    return LearnerData(data.x_train[keep], data.y_train[keep], data.x_vote, data.y_vote, data.x_test, data.y_test,
                       data.n_classes, data.image_shape)


@pytest.mark.parametrize("fraction, moved", [(0.02, False), (None, True)])
def test_a_proposal_leaves_the_output_unit_of_a_class_the_proposer_lacks_where_it_was(fraction, moved):
    data = _without_class(split_learner_data(load_task("digits"), 2, seed=0)[0], 3)
    learner = make_mlp_learner(data, seed=0, epochs=1, threads=1, rare_class_fraction=fraction)
    held = learner.mli_get_current_weights().weights
    proposal = learner.mli_propose_weights().weights
    step = (proposal["2.bias"] - held["2.bias"]).abs()
    assert bool(step[3] > 0) is moved
    assert bool(torch.all(step[[0, 1, 2, 4, 5, 6, 7, 8, 9]] > 0))
    with pytest.raises(ValueError, match="rare_class_fraction"):
        make_mlp_learner(data, seed=0, rare_class_fraction=-0.1)


def _honest_accuracy(datas, **params) -> float:
    learners = [make_learner("torch-mlp", data, seed=learner_seed(1, i), threads=1, **params)
                for i, data in enumerate(datas)]
    Experiment(learners, ProtocolConfig(seed=1)).run(20)
    return float(np.mean([learner.mli_test_weights(learner.mli_get_current_weights()).test_score
                          for learner in learners]))


@pytest.mark.slow
def test_on_label_skewed_shares_the_restricted_softmax_lets_the_group_learn():
    """Dirichlet 0.3 shares: with plain cross-entropy each proposal forgets what the voters hold and is voted down
    (75.4 here); with the restricted softmax the group learns (91.3). bench/byzantine.py measures all seeds."""
    datas = split_learner_data(load_task("digits"), 5, partition="dirichlet", alpha=0.3, seed=1)
    plain, restricted = _honest_accuracy(datas, rare_class_fraction=None), _honest_accuracy(datas)
    assert restricted > 0.88 and restricted > plain + 0.08
