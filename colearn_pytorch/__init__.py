"""colearn's PyTorch learner: turn any ``torch.nn.Module`` plus data loaders into a collective learner.

Install with ``pip install 'colearn[pytorch]'``. Importing this package does not import torch; the
submodules that need it (``pytorch_learner``, ``factories``, ``losses``, ``utils``, ``privacy``, ``export``, and colearn
0.2.x's task modules ``pytorch_xray`` and ``pytorch_covid_xray``) do.
``colearn_pytorch.data`` (MNIST-format file readers) needs only numpy.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PytorchLearner", "RestrictedSoftmaxLoss", "make_mlp_learner", "make_cnn_learner"]


def __getattr__(name: str) -> Any:  # lazy, so that `import colearn_pytorch.data` needs no torch
    if name == "PytorchLearner":
        from colearn_pytorch.pytorch_learner import PytorchLearner

        return PytorchLearner
    if name == "RestrictedSoftmaxLoss":
        from colearn_pytorch.losses import RestrictedSoftmaxLoss

        return RestrictedSoftmaxLoss
    if name in ("make_mlp_learner", "make_cnn_learner"):
        from colearn_pytorch import factories

        return getattr(factories, name)
    raise AttributeError(f"module 'colearn_pytorch' has no attribute {name!r}")
