"""Registered learner factories ``torch-mlp`` and ``torch-cnn``: a :class:`LearnerData` in, a learner out.

``factory(data, *, seed, **params)``. The same seed gives the same initial model, the same batches and the
same proposals (model initialisation and every proposal run in a seeded fork of torch's RNG, and the
train loader has its own seeded generator), so nothing depends on what else uses torch's global RNG.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from colearn.data.types import LearnerData
from colearn.learner_utils import DpSettings, dp_config  # noqa: F401  (dp_config: part of this module's API)
from colearn.vote_rules import NEURAL_NETWORK_VOTE_RULE, chance_rule, make_vote_rule
from colearn_pytorch.losses import training_loss
from colearn_pytorch.pytorch_learner import PytorchLearner
from colearn_pytorch.utils import categorical_accuracy

MLP_STEP_FACTOR = 15.0
"""torch-mlp's step check: honest torch-mlp proposals never moved an output unit more than 10.4 times the median
one (seeds 0-5, 5 and 10 learners, IID and Dirichlet 0.3), and the class cut's recall loss halves against the
"chance" rule's 30 (docs/robustness.md). torch-cnn keeps 30: its honest proposals reached 11.2."""


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(np.asarray(x, dtype=np.float32)),
                         torch.as_tensor(np.asarray(y, dtype=np.int64)))


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def build_learner(data: LearnerData, model_fn: Callable[[], nn.Module], *, seed: int, lr: float = 0.01,
                  batch_size: int = 32, epochs: int = 1, batches_per_proposal: Optional[int] = None,
                  optimizer: str = "adam", metric: str = "accuracy", eval_batch_size: int = 512,
                  label_smoothing: float = 0.1, init_seed: Optional[int] = None, device: str = "cpu",
                  threads: Optional[int] = None, dp: DpSettings = None, vote_rule: Any = None,
                  rare_class_fraction: Optional[float] = 0.02) -> PytorchLearner:
    """A :class:`PytorchLearner` for the model ``model_fn()`` builds, trained on ``data``.

    ``epochs`` passes over the train set per proposal, unless ``batches_per_proposal`` is given.
    ``metric``: ``"accuracy"`` (vote on categorical accuracy, higher is better) or ``"loss"`` (cross-entropy).
    ``label_smoothing`` of the training loss (0.1 generalises better on small data; accuracy scores are unaffected).
    ``init_seed`` (default ``seed``) seeds the initial weights; give all learners the same one for a common start.
    ``threads``: if given, ``torch.set_num_threads(threads)`` (process-wide). Models this small train several
    times faster on 1 thread than on 2 busy cores; results do not depend on it.
    ``dp``: train with differential privacy, see :func:`dp_config`.
    ``vote_rule``: how the learner votes (see :mod:`colearn.vote_rules`; default ``"chance"``).
    ``rare_class_fraction``: train with a restricted softmax (:class:`~colearn_pytorch.losses.RestrictedSoftmaxLoss`)
    that leaves out classes making up less than this fraction of the learner's training labels, so that a
    proposal does not forget the classes its peers hold (``None``: plain cross-entropy). Scores use every class.
    """
    for name, value in (("lr", lr), ("batch_size", batch_size), ("epochs", epochs),
                        ("eval_batch_size", eval_batch_size)):
        _positive(name, value)
    if batches_per_proposal is not None:
        _positive("batches_per_proposal", batches_per_proposal)
    if threads is not None:
        _positive("threads", threads)
        torch.set_num_threads(int(threads))
    if rare_class_fraction is not None and not 0.0 <= rare_class_fraction < 1.0:
        raise ValueError(f"rare_class_fraction must be in [0, 1) or None, got {rare_class_fraction!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed if init_seed is None else init_seed)
        model = model_fn()
    generator = torch.Generator().manual_seed(int(seed))
    train_loader = DataLoader(_tensors(data.x_train, data.y_train), batch_size=int(batch_size), shuffle=True,
                              generator=generator)
    vote_loader = DataLoader(_tensors(data.x_vote, data.y_vote), batch_size=int(eval_batch_size))
    test_loader = DataLoader(_tensors(data.x_test, data.y_test), batch_size=int(eval_batch_size))
    return PytorchLearner(
        model=model, optimizer=optimizers[optimizer](model.parameters(), lr=float(lr)),
        train_loader=train_loader, vote_loader=vote_loader, test_loader=test_loader, device=device,
        criterion=nn.CrossEntropyLoss(label_smoothing=float(label_smoothing)), minimise_criterion=metric == "loss",
        train_criterion=training_loss(data.y_train, data.n_classes, rare_class_fraction, label_smoothing),
        vote_criterion=categorical_accuracy if metric == "accuracy" else None,
        num_train_batches=int(batches_per_proposal or epochs * len(train_loader)),
        diff_priv_config=dp_config(dp), seed=seed, vote_rule=make_vote_rule(vote_rule or NEURAL_NETWORK_VOTE_RULE))


def mlp(n_features: int, n_classes: int, hidden: Sequence[int] = (64,)) -> nn.Module:
    """A fully connected ReLU network ``n_features -> hidden... -> n_classes`` (logits)."""
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def image_chw(data: LearnerData) -> Tuple[int, int, int]:
    """(channels, height, width) of the images behind ``data``'s flat rows."""
    shape = tuple(int(d) for d in (data.image_shape or ()))
    if not shape:
        side = int(round(data.n_features ** 0.5))
        if side * side != data.n_features:
            raise ValueError(f"data.image_shape is not set and {data.n_features} features are not a square image")
        shape = (side, side)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or int(np.prod(shape)) != data.n_features:
        raise ValueError(f"data.image_shape {data.image_shape} does not describe {data.n_features} features "
                         f"as (height, width) or (channels, height, width)")
    return shape  # type: ignore[return-value]


def small_cnn(chw: Tuple[int, int, int], n_classes: int, channels: Sequence[int] = (16, 32),
              hidden: int = 64) -> nn.Module:
    """Conv(3x3)-ReLU-MaxPool blocks then a dense layer; takes flat rows and reshapes them to ``chw``."""
    layers: list[nn.Module] = [nn.Unflatten(1, chw)]
    in_channels, height, width = chw
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, int(out_channels), 3, padding=1), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = int(out_channels)
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, int(hidden)), nn.ReLU(),
               nn.Linear(int(hidden), n_classes)]
    return nn.Sequential(*layers)


# One learner trains per round, so each proposal should do real work: 10 epochs (with the restricted softmax)
# against 3 took honest-only torch-mlp runs on Dirichlet 0.3 splits of digits from 77.6 to 92.0 (5 learners) and
# torch-cnn from 28.4 to 94.9, IID unchanged or better (measured: docs/pytorch.md, docs/robustness.md).
# With differential privacy every epoch spends budget: there the default stays one epoch.
DEFAULT_EPOCHS, DEFAULT_DP_EPOCHS = 10, 1


def default_epochs(epochs: Optional[int], dp: DpSettings) -> int:
    """``epochs`` if given, else 10 (1 with differential privacy)."""
    if epochs is not None:
        return epochs
    return DEFAULT_DP_EPOCHS if dp is not None else DEFAULT_EPOCHS


def make_mlp_learner(data: LearnerData, *, seed: int, hidden: Sequence[int] = (128,), lr: float = 0.01,
                     batch_size: int = 32, epochs: Optional[int] = None, **params: Any) -> PytorchLearner:
    """A PyTorch MLP learner (``torch-mlp``); ``epochs`` per proposal: 10, or 1 with ``dp``; votes by the "chance"
    rule with a step factor of 15 (:data:`MLP_STEP_FACTOR`) unless ``vote_rule`` is given. Other params: see
    :func:`build_learner`."""
    if params.get("vote_rule") is None:
        params["vote_rule"] = chance_rule(step_factor=MLP_STEP_FACTOR)
    return build_learner(data, lambda: mlp(data.n_features, data.n_classes, hidden), seed=seed, lr=lr,
                         batch_size=batch_size, epochs=default_epochs(epochs, params.get("dp")), **params)


def make_cnn_learner(data: LearnerData, *, seed: int, channels: Sequence[int] = (16, 32), hidden: int = 64,
                     lr: float = 0.005, batch_size: int = 32, epochs: Optional[int] = None,
                     **params: Any) -> PytorchLearner:
    """A small PyTorch CNN learner (``torch-cnn``) on rows reshaped with ``data.image_shape``; ``epochs`` per
    proposal: 10, or 1 with ``dp``."""
    chw = image_chw(data)
    return build_learner(data, lambda: small_cnn(chw, data.n_classes, channels, hidden), seed=seed, lr=lr,
                         batch_size=batch_size, epochs=default_epochs(epochs, params.get("dp")), **params)
