"""colearn 0.2.x learner code that must keep working: PyTorch tensors, Keras loaders of every kind Keras takes,
Keras DP's 0.2.x attributes, optimisers built with ``lr``, and the small names 0.2.x exported."""
from __future__ import annotations

import math
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

from colearn.encoding import decode_weights, encode_weights
from colearn.learner_utils import WeightsMismatchError
from colearn.ml_interface import DiffPrivConfig, Weights

pytestmark = pytest.mark.timeout(300)


# ---- PyTorch: 0.2.8 handed out the model's tensors ------------------------------------------------------
def torch_learner(seed: int = 0):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from colearn_pytorch.pytorch_learner import PytorchLearner
    from colearn_pytorch.utils import categorical_accuracy

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(48, 4)), dtype=torch.float32)
    y = torch.as_tensor((x[:, 0] > 0).long())
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    return PytorchLearner(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), train_loader=loader,
                          vote_loader=loader, test_loader=loader, criterion=torch.nn.CrossEntropyLoss(),
                          vote_criterion=categorical_accuracy, minimise_criterion=False)


def test_pytorch_learner_hands_back_the_models_tensors_as_0_2_8_did():
    import torch

    learner = torch_learner(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    weights = learner.mli_get_current_weights().weights
    model.load_state_dict(weights)  # 0.2.x code that needs tensors
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), learner.model.state_dict().values()))
    assert all(isinstance(t, torch.Tensor) and not t.requires_grad for t in weights.values())
    weights["0.weight"].zero_()  # a copy: the learner's model does not change
    assert not torch.all(learner.model.state_dict()["0.weight"] == 0)
    proposal = learner.mli_propose_weights()
    assert all(isinstance(t, torch.Tensor) for t in proposal.weights.values())

    other = torch_learner(1)
    other.mli_accept_weights(proposal)  # in process: tensors go straight from learner to learner ...
    proposal.weights["0.bias"].add_(1.0)
    assert not torch.equal(other.model.state_dict()["0.bias"], proposal.weights["0.bias"])  # ... copied, not shared

    arrived = decode_weights(encode_weights(learner.mli_get_current_weights().weights))  # across a boundary
    assert all(type(a) is np.ndarray for a in arrived.values())
    other.mli_accept_weights(Weights(weights=arrived))
    assert all(torch.equal(a, b) for a, b in zip(other.model.state_dict().values(),
                                                 learner.model.state_dict().values()))


def test_pytorch_learner_checks_the_layout_of_tensors_and_arrays():
    learner = torch_learner(0)
    good = learner.mli_get_current_weights().weights
    learner.mli_check_layout(good)
    learner.mli_check_layout(OrderedDict((k, v.numpy()) for k, v in good.items()))
    with pytest.raises(WeightsMismatchError, match="0.bias"):
        learner.mli_check_layout(OrderedDict((k, v[:1] if k == "0.bias" else v) for k, v in good.items()))


def test_pytorch_learner_module_re_exports_0_2_x_names():
    from colearn_pytorch import pytorch_learner

    from colearn import ml_interface
    assert pytorch_learner.DiffPrivBudget is ml_interface.DiffPrivBudget
    assert pytorch_learner.convert_model_to_onnx is ml_interface.convert_model_to_onnx


# ---- Keras: loaders of every kind model.fit takes ------------------------------------------------------
def keras_model(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(6, 6, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def image_data(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.normal(size=(n, 6, 6, 1)) + y[:, None, None, None] * 2).astype(np.float32)
    return x, y


def make_pydataset(x, y, batch_size):
    import keras

    class Batches(keras.utils.PyDataset):  # a 0.2.x-style Sequence subclass
        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            rows = slice(index * batch_size, (index + 1) * batch_size)
            return x[rows], y[rows]

    return Batches()


@pytest.mark.slow
def test_keras_learner_takes_a_pydataset_and_an_image_data_generator_iterator():
    import keras
    import tensorflow as tf

    from colearn_keras.keras_learner import KerasLearner

    x, y = image_data()
    flow = tf.keras.preprocessing.image.ImageDataGenerator(horizontal_flip=True).flow(x, y, batch_size=8, seed=0)
    assert isinstance(flow, keras.utils.PyDataset)
    vote = make_pydataset(x, y, 6)
    learner = KerasLearner(keras_model(), train_loader=flow, vote_loader=vote, test_loader=make_pydataset(x, y, 12),
                           criterion="accuracy", minimise_criterion=False)
    assert learner.vote_loader is vote and learner.get_train_batch_size() == 8
    assert learner.get_privacy_budget() is None and learner.diff_priv_budget is None  # no DP
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    expected = keras_model()  # the same score from model.evaluate on the same PyDataset
    expected.set_weights(proposal.weights)
    assert verdict.vote_score == pytest.approx(expected.evaluate(vote, return_dict=True, verbose=0)["accuracy"])
    learner.mli_accept_weights(proposal)
    assert all(np.array_equal(a, b) for a, b in zip(learner.mli_get_current_weights().weights, proposal.weights))
    with pytest.raises(TypeError, match="train_loader must be"):
        KerasLearner(keras_model(), train_loader=[1, 2, 3], vote_loader=vote)


@pytest.mark.slow
def test_keras_learner_takes_a_torch_data_loader():
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from colearn_keras.keras_learner import KerasLearner

    x, y = image_data()
    loader = DataLoader(TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), batch_size=8)
    learner = KerasLearner(keras_model(), train_loader=loader, vote_loader=loader, criterion="accuracy",
                           minimise_criterion=False)
    assert learner.get_train_batch_size() == 8
    for _ in range(2):  # a DataLoader can be iterated again: every proposal trains
        proposal = learner.mli_propose_weights()
        assert not all(np.array_equal(a, b) for a, b in zip(proposal.weights, learner.mli_get_current_weights().weights))
        learner.mli_accept_weights(proposal)


@pytest.mark.slow
def test_keras_dp_keeps_0_2_x_attributes_and_get_privacy_budget_meaning():
    from colearn_keras.keras_learner import KerasLearner

    x, y = image_data(32)
    config = DiffPrivConfig(target_epsilon=3.0, target_delta=1e-5, max_grad_norm=1.0, noise_multiplier=2.0)
    learner = KerasLearner(keras_model(), train_loader=make_pydataset(x, y, 8), vote_loader=(x, y),
                           criterion="accuracy", minimise_criterion=False, model_fit_kwargs={"epochs": 2},
                           diff_priv_config=config, seed=0)
    assert learner.epochs_per_proposal == 2 and learner.cumulative_epochs == 0
    assert learner.diff_priv_budget.consumed_epsilon == 0.0 and learner.diff_priv_budget.target_epsilon == 3.0
    assert learner.diff_priv_budget.consumed_delta == 0.0  # nothing spent yet (0.2.x said target_delta)
    proposals = 0
    while True:
        next_epsilon = learner.get_privacy_budget()  # 0.2.x: epsilon after ONE MORE proposal
        weights = learner.mli_propose_weights()
        if next_epsilon > config.target_epsilon:
            assert weights.training_summary.error_code is not None  # refused, exactly as 0.2.x decided
            break
        proposals += 1
        assert weights.training_summary.error_code is None
        assert learner.diff_priv_budget.consumed_epsilon == pytest.approx(next_epsilon)  # now spent
        assert learner.cumulative_epochs == 2 * proposals
        assert proposals < 20
    assert proposals == 2 and learner.privacy_budget() == learner.diff_priv_budget  # 2.08, 2.81, then 3.40 > 3


def test_keras_3_refuses_lr_and_colearn_builders_accept_it():
    import keras

    from colearn_keras.utils import make_optimizer

    with pytest.raises(ValueError, match="lr"):
        keras.optimizers.Adam(lr=0.01)  # what every 0.2.x Keras example wrote
    adam = make_optimizer(keras.optimizers.Adam, lr=0.01)
    assert isinstance(adam, keras.optimizers.Adam) and float(adam.learning_rate) == pytest.approx(0.01)
    assert float(make_optimizer("sgd", lr=0.5).learning_rate) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="not both"):
        make_optimizer("adam", lr=0.1, learning_rate=0.2)


# ---- small names ----------------------------------------------------------------------------------------
def test_small_names_0_2_x_exported():
    from colearn import standalone_driver
    from colearn.training import run_one_round
    from colearn.utils.data import GAUTH_ENV_VAR_NAME

    assert run_one_round is standalone_driver.run_one_round
    assert GAUTH_ENV_VAR_NAME == "GOOGLE_APPLICATION_CREDENTIALS"
    code = ("import sys, colearn.ml_interface as m; assert 'tensorflow' not in sys.modules and 'torch' not in "
            "sys.modules; import sklearn.base; assert m.model_classes_sklearn == (sklearn.base.ClassifierMixin,); "
            "assert 'tensorflow' not in sys.modules and 'torch' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
    import keras
    import torch

    from colearn.ml_interface import model_classes_keras, model_classes_scipy
    assert model_classes_keras == (keras.Model,) and model_classes_scipy == (torch.nn.Module,)  # 0.2.x's names


@pytest.mark.slow
def test_keras_learner_trains_on_a_generator_once_as_0_2_x_did():
    from colearn_keras.keras_learner import KerasLearner

    x, y = image_data()
    batches = ((x[i:i + 8], y[i:i + 8]) for i in range(0, len(x), 8))
    learner = KerasLearner(keras_model(), train_loader=batches, vote_loader=(x, y), criterion="accuracy",
                           minimise_criterion=False)
    with pytest.raises(ValueError, match="generator cannot be read without using it up"):
        learner.get_train_batch_size()
    proposal = learner.mli_propose_weights()  # model.fit(generator), one pass
    assert not all(np.array_equal(a, b) for a, b in zip(proposal.weights, learner.mli_get_current_weights().weights))
    sized = KerasLearner(keras_model(), train_loader=iter([(x, y)]), vote_loader=(x, y),
                         model_fit_kwargs={"batch_size": 24})
    assert sized.get_train_batch_size() == 24


# ---- ties: 0.2.x's learners rejected a proposal that scored exactly as well as the held model --------
@pytest.mark.slow
def test_0_2_x_learners_built_the_0_2_x_way_reject_a_tie_and_colearns_factories_approve_it():
    from colearn.data import load_task, split_learner_data
    from colearn.registry import make_learner
    from colearn_keras.keras_learner import KerasLearner

    learner = torch_learner()
    held = learner.mli_get_current_weights()
    assert learner.mli_test_weights(held).vote is False  # 0.2.x: new_score > held_score
    assert torch_learner().voter.rule.name == "strict"
    x, y = image_data()
    keras_learner = KerasLearner(keras_model(), (x, y), (x, y), (x, y), minimise_criterion=False, criterion="accuracy")
    assert keras_learner.mli_test_weights(keras_learner.mli_get_current_weights()).vote is False
    data = split_learner_data(load_task("iris"), 3, seed=0)[0]
    for name, rule in (("torch-mlp", "chance"), ("sgd", "robust")):
        assert make_learner(name, data, seed=0).voter.rule.name == rule
    told = KerasLearner(keras_model(), (x, y), (x, y), (x, y), minimise_criterion=False, criterion="accuracy",
                        vote_rule="not-worse")
    assert told.mli_test_weights(told.mli_get_current_weights()).vote is True  # unless told otherwise
