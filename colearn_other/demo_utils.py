"""colearn 0.2.x's demo helpers: the ``split_to_folders`` of a data loader and the score name of a model."""
from __future__ import annotations

import importlib
from typing import Callable

_SPLITTERS = {"PYTORCH_XRAY": "colearn_pytorch.pytorch_xray", "KERAS_MNIST": "colearn_keras.keras_mnist",
              "KERAS_CIFAR10": "colearn_keras.keras_cifar10", "PYTORCH_COVID_XRAY": "colearn_pytorch.pytorch_covid_xray",
              "FRAUD": "colearn_other.fraud_dataset"}


def get_split_to_folders(dataloader_name: str) -> Callable:
    """The ``split_to_folders`` of data loader ``dataloader_name`` (imports only that task's framework)."""
    if dataloader_name not in _SPLITTERS:
        raise NotImplementedError(f"Split not defined for dataloader {dataloader_name}")
    return importlib.import_module(_SPLITTERS[dataloader_name]).split_to_folders


def get_score_name(model_name: str) -> str:
    """The name of the score a model's learner votes on (for plot labels)."""
    if model_name == "PYTORCH_XRAY":
        return "auc"
    if model_name in ("KERAS_MNIST", "KERAS_MNIST_RESNET", "KERAS_CIFAR10", "PYTORCH_COVID_XRAY"):
        return "categorical_accuracy"
    if model_name == "FRAUD":
        return "accuracy"
    return "loss"
