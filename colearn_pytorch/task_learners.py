"""What colearn 0.2.x's PyTorch tasks (``pytorch_xray``, ``pytorch_covid_xray``) share: the device, the loader
options and the learner built on (train, vote, test) loaders."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch

from colearn.compat.task_files import train_vote_test
from colearn_pytorch.pytorch_learner import PytorchLearner


def device_for(no_cuda: bool) -> torch.device:
    return torch.device("cuda" if not no_cuda and torch.cuda.is_available() else "cpu")


def loader_kwargs(no_cuda: bool) -> Dict[str, Any]:
    """0.2.x's DataLoader options: a worker and pinned memory when training on CUDA."""
    return {"num_workers": 1, "pin_memory": True} if device_for(no_cuda).type == "cuda" else {}


def task_learner(model: torch.nn.Module, data_loaders: Sequence[Any], criterion: torch.nn.Module,
                 vote_criterion: Optional[Callable[[torch.Tensor, torch.Tensor], float]], learning_rate: float,
                 steps_per_epoch: int, vote_batches: int, no_cuda: bool) -> PytorchLearner:
    """A learner with Adam at ``learning_rate``, voting on ``vote_criterion`` (higher is better) or, without one,
    on ``criterion`` (lower is better)."""
    train, vote, test = train_vote_test(data_loaders)
    voting: Dict[str, Any] = dict(vote_criterion=vote_criterion, minimise_criterion=False) if vote_criterion else {}
    return PytorchLearner(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=learning_rate),
                          train_loader=train, vote_loader=vote, test_loader=test, device=device_for(no_cuda),
                          criterion=criterion, num_train_batches=steps_per_epoch, num_test_batches=vote_batches,
                          **voting)
