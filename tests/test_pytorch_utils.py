"""colearn_pytorch.utils: the 0.2.x metrics and split helper that old code imports."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="colearn_pytorch.utils needs torch (pip install 'colearn[pytorch]')")

from colearn_pytorch.utils import (auc_from_logits, binary_accuracy_from_logits, categorical_accuracy,  # noqa: E402
                                   prepare_data_split_list)


def test_categorical_accuracy_counts_argmax_hits():
    outputs = torch.tensor([[0.1, 0.9], [2.0, -1.0], [0.0, 3.0], [5.0, 1.0]])
    assert categorical_accuracy(outputs, torch.tensor([1, 0, 0, 1])) == 0.5
    assert categorical_accuracy(outputs, torch.tensor([1, 0, 1, 0])) == 1.0


def test_binary_metrics_from_logits():
    logits = torch.tensor([[3.0], [-2.0], [0.5], [-0.1]])
    labels = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    assert binary_accuracy_from_logits(logits, labels) == 0.75
    assert binary_accuracy_from_logits(logits.reshape(-1), labels.reshape(-1)) == 0.75
    assert auc_from_logits(logits, labels) == 1.0  # the positive has the highest logit
    assert auc_from_logits(-logits, labels) == 0.0


@pytest.mark.parametrize("size, n, expected", [(10, 3, [3, 3, 4]), (9, 3, [3, 3, 3]), (2, 4, [0, 0, 0, 2])])
def test_prepare_data_split_list_sums_to_the_data(size, n, expected):
    parts = prepare_data_split_list(range(size), n)
    assert parts == expected and sum(parts) == size
    with pytest.raises(ValueError, match="n must"):
        prepare_data_split_list(range(size), 0)
