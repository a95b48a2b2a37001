"""PytorchLearner: the MLI contract, 0.2.x compatibility and the regressions of colearn 0.2.8's bugs."""
from __future__ import annotations

import importlib.util
import warnings
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch learner needs torch (pip install 'colearn[pytorch]')")

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from colearn.encoding import decode_weights, encode_weights  # noqa: E402
from colearn.learner_utils import WeightsMismatchError  # noqa: E402
from colearn.ml_interface import ModelFormat, OnnxUnavailableError, PredictionRequest, Weights  # noqa: E402
from colearn_pytorch.pytorch_learner import PytorchLearner  # noqa: E402
from colearn_pytorch.utils import categorical_accuracy  # noqa: E402


def blobs(n: int, seed: int, n_features: int = 4, n_classes: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = np.random.default_rng(99).normal(0, 3, (n_classes, n_features))
    x = centres[y] + rng.normal(0, 1, (n, n_features))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def loader(n: int, seed: int, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    x, y = blobs(n, seed)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


def make_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def make_learner(seed: int = 0, *, vote_criterion=categorical_accuracy, **kwargs) -> PytorchLearner:
    model = make_model(seed)
    defaults = dict(
        model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        train_loader=loader(64, seed, shuffle=True), vote_loader=loader(32, seed + 100),
        test_loader=loader(32, seed + 200), criterion=torch.nn.CrossEntropyLoss(),
        vote_criterion=vote_criterion, minimise_criterion=vote_criterion is None, seed=seed)
    return PytorchLearner(**{**defaults, **kwargs})


def same(a, b) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


# -- the contract -----------------------------------------------------------------------------------------
def test_weights_are_ordered_tensor_copies_in_state_dict_order():
    learner = make_learner()
    weights = learner.mli_get_current_weights().weights
    state = learner.model.state_dict()
    assert isinstance(weights, OrderedDict) and list(weights) == list(state)
    for name, tensor in weights.items():
        assert isinstance(tensor, torch.Tensor)  # as colearn 0.2.8 returned them
        assert tensor.shape == state[name].shape and tensor.dtype == torch.float32
    weights["0.weight"][:] = 123.0  # a copy: the model is untouched
    assert not torch.all(learner.model.state_dict()["0.weight"] == 123.0)
    decoded = decode_weights(encode_weights(weights))  # crosses boundaries as typed arrays, never pickles
    assert list(decoded) == list(weights) and isinstance(decoded["0.bias"], np.ndarray)
    assert np.array_equal(decoded["0.bias"], weights["0.bias"].numpy())


def test_propose_leaves_held_model_and_optimizer_state_unchanged():
    learner = make_learner()
    before = learner.mli_get_current_weights().weights
    proposal = learner.mli_propose_weights()
    assert same(learner.mli_get_current_weights().weights, before)
    assert not same(proposal.weights, before)
    assert len(learner.optimizer.state) == 0  # no momentum carried into the next proposal


def test_optimizer_state_kept_when_asked():
    learner = make_learner(need_reset_optimizer=False)
    learner.mli_propose_weights()
    assert len(learner.optimizer.state) > 0


def test_test_weights_does_not_change_model_and_accept_does():
    learner, other = make_learner(0), make_learner(1)
    before = learner.mli_get_current_weights().weights
    proposal = other.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert same(learner.mli_get_current_weights().weights, before)
    assert 0.0 <= verdict.vote_score <= 1.0 and 0.0 <= verdict.test_score <= 1.0
    assert verdict.criterion == "categorical_accuracy" and isinstance(verdict.vote, bool)
    learner.mli_accept_weights(proposal)
    assert same(learner.mli_get_current_weights().weights, proposal.weights)


def test_accept_reuses_the_scores_test_computed(monkeypatch):
    learner, other = make_learner(0), make_learner(1)
    proposal = other.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    calls = []
    original = learner.test
    monkeypatch.setattr(learner, "test", lambda loader: calls.append(loader) or original(loader))
    learner.mli_accept_weights(proposal)
    assert learner.vote_score == verdict.vote_score
    assert calls == []  # nothing re-evaluated
    learner.mli_test_weights(proposal)  # scoring the held weights again is free too
    assert calls == []


def test_held_score_evaluated_lazily_after_accepting_untested_weights():
    learner, other = make_learner(0), make_learner(1)
    proposal = other.mli_propose_weights()
    learner.mli_accept_weights(proposal)  # never tested here
    assert learner.vote_score == pytest.approx(learner.test(learner.vote_loader))


def test_same_seed_same_proposals_and_scores():
    runs = []
    for _ in range(2):
        torch.manual_seed(12345 + len(runs))  # the global RNG differs between runs: must not matter
        learner = make_learner(seed=7)
        first, second = learner.mli_propose_weights(), learner.mli_propose_weights()
        runs.append((first.weights, second.weights, learner.mli_test_weights(first).vote_score))
    assert same(runs[0][0], runs[1][0]) and same(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]
    assert not same(runs[0][0], runs[0][1])  # successive proposals draw fresh batches


# -- the four bugs of colearn 0.2.8 ----------------------------------------------------------------------
def test_vote_loader_with_exactly_one_batch_works():
    learner = make_learner(vote_loader=loader(10, 5, batch_size=64))
    assert len(learner.vote_loader) == 1
    verdict = learner.mli_test_weights(learner.mli_get_current_weights())
    assert 0.0 <= verdict.vote_score <= 1.0


def test_empty_loader_is_refused_naming_it():
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)), batch_size=4)
    learner = make_learner(vote_loader=empty)
    with pytest.raises(ValueError, match="vote_loader has no batches"):
        learner.mli_test_weights(learner.mli_get_current_weights())


@pytest.mark.parametrize("num_test_batches", [None, 2])
def test_mean_loss_is_a_per_sample_mean(num_test_batches):
    learner = make_learner(vote_criterion=None, num_test_batches=num_test_batches)
    eval_loader = loader(37, 3, batch_size=16)  # batches of 16, 16, 5: unequal on purpose
    x, y = eval_loader.dataset.tensors
    used = len(y) if num_test_batches is None else 16 * num_test_batches
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(learner.model(x[:used]), y[:used]).item()
    assert learner.test(eval_loader) == pytest.approx(expected, rel=1e-5)


def test_current_weights_read_the_state_dict_once(monkeypatch):
    learner = make_learner()
    calls = []
    original = learner.model.state_dict
    monkeypatch.setattr(learner.model, "state_dict", lambda *a, **k: calls.append(1) or original(*a, **k))
    learner.mli_get_current_weights()
    assert len(calls) == 1


@pytest.mark.parametrize("minimise", [True, False])
@pytest.mark.parametrize("rule, tie", [("not-worse", True), (None, False)])
def test_ties_follow_the_vote_rule_and_0_2_x_s_strict_rule_is_the_direct_default(minimise, rule, tie):
    learner = make_learner(vote_criterion=None if minimise else categorical_accuracy,
                           **({"vote_rule": rule} if rule else {}))
    learner.minimise_criterion = minimise
    held = learner.vote_score
    assert learner.vote(held) is tie
    worse = held + 0.1 if minimise else held - 0.1
    assert learner.vote(worse) is False
    verdict = learner.mli_test_weights(learner.mli_get_current_weights())  # the held model ties with itself
    assert verdict.vote is tie


# -- weight validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("corrupt, message", [
    (lambda w: OrderedDict((("renamed" if k == "0.bias" else k), v) for k, v in w.items()), "missing"),
    (lambda w: OrderedDict((k, v[:-1] if k == "0.bias" else v) for k, v in w.items()), "shape"),
    (lambda w: OrderedDict((k, v.astype(np.float64) if k == "0.bias" else v) for k, v in w.items()), "dtype"),
    (lambda w: OrderedDict(reversed(list(w.items()))), "order"),
    (lambda w: list(w.values()), "mapping"),
])
def test_mismatched_weights_are_refused_and_model_unchanged(corrupt, message):
    learner = make_learner()
    before = learner.mli_get_current_weights().weights
    arrived = decode_weights(encode_weights(make_learner(1).mli_get_current_weights().weights))  # from a peer
    bad = Weights(weights=corrupt(OrderedDict(arrived)))
    for action in (learner.mli_test_weights, learner.mli_accept_weights, learner.set_weights):
        with pytest.raises(WeightsMismatchError, match=message):
            action(bad)
        assert same(learner.mli_get_current_weights().weights, before)


def test_set_weights_accepts_0_2_x_style_tensors():
    learner, other = make_learner(0), make_learner(1)
    learner.set_weights(Weights(weights=other.model.state_dict()))
    assert same(learner.mli_get_current_weights().weights, other.mli_get_current_weights().weights)


# -- 0.2.x compatibility and the rest --------------------------------------------------------------------
def test_0_2_x_subclass_and_positional_constructor_keep_working():
    class Old(PytorchLearner):
        def vote(self, new_score) -> bool:  # 0.2.x subclasses override the public helpers
            self.seen = new_score
            return super().vote(new_score)

    model = make_model()
    learner = Old(model, torch.optim.SGD(model.parameters(), lr=0.1), loader(32, 0), loader(16, 1), loader(16, 2),
                  True, torch.device("cpu"), torch.nn.CrossEntropyLoss(), True, None, 2, None, None)
    verdict = learner.mli_test_weights(learner.mli_propose_weights())
    assert learner.seen == verdict.vote_score and learner.num_train_batches == 2
    learner.reset_optimizer()
    learner.train()  # public helpers still there
    assert learner.get_training_summary() is None


def test_num_train_batches_beyond_one_pass_reiterates_the_loader():
    learner = make_learner(num_train_batches=9)  # the loader has 4 batches
    steps = []
    learner.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    learner.mli_propose_weights()
    assert len(steps) == 9


def test_cuda_falls_back_to_cpu_when_unavailable():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the fallback cannot be observed")
    with pytest.warns(RuntimeWarning, match="CUDA"):
        learner = make_learner(device="cuda")
    assert learner.device.type == "cpu"
    assert next(learner.model.parameters()).device.type == "cpu"


def test_bad_constructor_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="num_train_batches"):
        make_learner(num_train_batches=0)
    with pytest.raises(ValueError, match="model_export"):
        make_learner(model_export="pickle")
    learner = make_learner(criterion=None)
    with pytest.raises(ValueError, match="criterion"):
        learner.mli_propose_weights()


def test_current_model_falls_back_to_typed_state_dict_with_the_reason():
    learner = make_learner()
    if importlib.util.find_spec("onnx") is not None:
        pytest.skip("onnx is installed: the fallback is not taken")
    with pytest.warns(RuntimeWarning, match="onnx"):
        exported = learner.mli_get_current_model()
    assert exported.model_format == ModelFormat.PYTORCH_STATE_DICT
    assert same(exported.model, learner.mli_get_current_weights().weights)
    with pytest.raises(OnnxUnavailableError, match="onnx"):
        make_learner(model_export="onnx").mli_get_current_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_learner(model_export="state_dict").mli_get_current_model().model_format == \
            ModelFormat.PYTORCH_STATE_DICT


def test_current_model_is_onnx_when_the_exporter_is_installed():
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    learner = make_learner()
    exported = learner.mli_get_current_model()
    assert exported.model_format == ModelFormat.ONNX
    assert len(exported.model.graph.node) > 0


def test_prediction_uses_the_held_model():
    learner = make_learner()
    x, _ = blobs(5, 42)
    prediction = learner.mli_make_prediction(PredictionRequest(name="p", input_data=x.numpy()))
    with torch.no_grad():
        expected = learner.model(x).numpy()
    assert np.allclose(prediction.prediction_data, expected)


def test_convert_model_to_onnx_routes_torch_models_to_export():
    from colearn.ml_interface import convert_model_to_onnx

    model = make_model()
    if importlib.util.find_spec("onnx") is None:
        with pytest.raises(OnnxUnavailableError, match="pip install onnx"):
            convert_model_to_onnx(model)
        return
    proto = convert_model_to_onnx(model)  # a Linear first layer: the input shape is inferred
    assert [n.op_type for n in proto.graph.node].count("Gemm") == 2
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    with pytest.raises(OnnxUnavailableError, match="example_input"):
        convert_model_to_onnx(conv)
