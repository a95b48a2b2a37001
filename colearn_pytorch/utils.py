"""Metrics and helpers that colearn 0.2.x code imports from ``colearn_pytorch.utils``.

The metrics take the model's outputs and the labels of a whole loader and return a float; pass them as
a learner's ``vote_criterion`` (with ``minimise_criterion=False``).
"""
from __future__ import annotations

from typing import List, Sized

import torch
from sklearn.metrics import roc_auc_score


def categorical_accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose highest-scoring class (argmax over dim 1) is the label."""
    predictions = torch.argmax(outputs, dim=1)
    return float((predictions == labels.reshape(predictions.shape).to(predictions.dtype)).sum().item()) / len(labels)


def binary_accuracy_from_logits(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples where ``sigmoid(logit) > 0.5`` matches the 0/1 label."""
    predictions = (torch.sigmoid(outputs) > 0.5).float().reshape(-1)
    return float((predictions == labels.reshape(-1).float()).sum().item()) / len(predictions)


def auc_from_logits(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``sigmoid(logits)`` against the 0/1 labels."""
    scores = torch.sigmoid(outputs).detach().cpu().numpy().reshape(-1)
    return float(roc_auc_score(labels.detach().cpu().numpy().reshape(-1).astype(int), scores))


def prepare_data_split_list(data: Sized, n: int) -> List[int]:
    """Sizes for splitting ``data`` into ``n`` parts (e.g. for ``torch.utils.data.random_split``).

    Every part gets ``len(data) // n``; the last also gets the remainder, so the sizes sum to ``len(data)``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    parts = [len(data) // n] * n
    parts[-1] += len(data) - sum(parts)
    return parts
