"""Training losses for collective learning on label-skewed (non-IID) data.

In colearn one learner trains at a time, on its own data, and every other learner votes on the result. A
learner that holds (almost) no sample of a class still pushes that class down in plain cross-entropy, since
every one of its samples is a negative for it; the proposal then forgets classes its peers hold, they vote it
down, and on label-skewed splits the shared model stops learning. The restricted softmax of FedRS (Li and Zhan,
"FedRS: Federated Learning with Restricted Softmax for Label Distribution Non-IID Data", KDD 2021) leaves out
of the training softmax the classes a learner has too few samples of: their logits are multiplied by 0, so
their output units get no gradient and stay where the shared model had them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from colearn.learner_utils import kept_classes


class RestrictedSoftmaxLoss(nn.Module):
    """Cross-entropy over the classes that make up at least ``rare_fraction`` of ``labels`` (and at least one
    sample); the logits of the other classes are multiplied by 0 (FedRS with alpha = 0).

    Only for training: score a model with the plain criterion, over every class.
    """

    def __init__(self, labels: Sequence[int], n_classes: int, rare_fraction: float = 0.02,
                 label_smoothing: float = 0.0):
        super().__init__()
        kept = torch.zeros(int(n_classes), dtype=torch.float32)
        kept[kept_classes(labels, n_classes, rare_fraction)] = 1.0
        self.register_buffer("kept", kept)
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))

    @property
    def kept_classes(self) -> Sequence[int]:
        """The classes this learner trains; the others' output units do not move."""
        return [int(c) for c in torch.nonzero(self.kept).flatten()]

    def forward(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.cross_entropy(output * self.kept.to(output.device, output.dtype), labels)


def training_loss(labels: Sequence[int], n_classes: int, rare_fraction: Optional[float],
                  label_smoothing: float) -> nn.Module:
    """The training loss of colearn's PyTorch factories: the restricted softmax, or (``rare_fraction=None``)
    plain cross-entropy."""
    if rare_fraction is None:
        return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
    return RestrictedSoftmaxLoss(labels, n_classes, rare_fraction, label_smoothing)
