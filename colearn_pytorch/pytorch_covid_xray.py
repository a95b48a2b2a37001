"""colearn 0.2.x's COVID-19 X-ray features task for PyTorch, registered as ``PYTORCH_COVID_XRAY``.

Local data only: ``split_to_folders(data_dir, n_learners)`` reads ``covid.mat``, ``normal.mat`` and
``pneumonia.mat`` (MATLAB files whose variable of the same name holds one row per image: features, then the
label) from ``data_dir``, scales the features to [0, 1], reduces them to 64 with a linear kernel PCA (as 0.2.x
did) and writes each learner's ``data.npy`` / ``labels.npy``.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as nn_func
from torch.utils.data import DataLoader, TensorDataset

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import local_folder, read_arrays, require_files, source_folder, three_way, write_parts
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_pytorch.pytorch_learner import PytorchLearner
from colearn_pytorch.task_learners import loader_kwargs, task_learner
from colearn_pytorch.utils import categorical_accuracy

TASK = "colearn_pytorch.pytorch_covid_xray"
DATA, LABELS = "data", "labels"  # <name>.npy in each learner's folder (0.2.x: data.pickle, labels.pickle)
CLASSES = ("covid", "normal", "pneumonia")
N_FEATURES = 64
Loaders = Tuple[DataLoader, DataLoader, DataLoader]


class ModelType(Enum):
    MULTILAYER_PERCEPTRON = 1


class TorchCovidXrayPerceptronModel(nn.Module):
    """0.2.x's perceptron: 64 -> 256 -> 128 -> 64 -> 32 -> 16 -> 3, ReLU and dropout 0.2, log-softmax.

    Dropout acts only in training mode (0.2.x dropped units when scoring too, which made votes noisy).
    """

    def __init__(self) -> None:
        super().__init__()
        sizes = (N_FEATURES, 256, 128, 64, 32, 16, 3)
        for index, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
            setattr(self, f"fc{index}", nn.Linear(n_in, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(1, 6):
            x = nn_func.dropout(nn_func.relu(getattr(self, f"fc{index}")(x)), 0.2, training=self.training)
        return nn_func.log_softmax(self.fc6(x), dim=1)


def prepare_model(model_type: ModelType = ModelType.MULTILAYER_PERCEPTRON) -> nn.Module:
    if model_type != ModelType.MULTILAYER_PERCEPTRON:
        raise ValueError(f"model_type {model_type} is not part of the ModelType enum")
    return TorchCovidXrayPerceptronModel()


def _make_loader(data: np.ndarray, labels: np.ndarray, batch_size: int, **loader_kwargs: Any) -> DataLoader:
    dataset = TensorDataset(torch.as_tensor(data, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, **loader_kwargs)


@FactoryRegistry.register_dataloader("PYTORCH_COVID_XRAY")
def prepare_data_loaders(location: Optional[str] = None, train_ratio: float = 0.8, vote_ratio: float = 0.1,
                         batch_size: int = 8, no_cuda: bool = False, **_kwargs: Any) -> Loaders:
    """Train, vote and test loaders of the learner folder ``location`` (written by :func:`split_to_folders`)."""
    folder = local_folder(location if location is not None else _kwargs.get("train_folder"), TASK)
    data, labels = read_arrays(folder, (DATA, LABELS), TASK)
    return tuple(_make_loader(data[part], labels[part], batch_size, **loader_kwargs(no_cuda))
                 for part in three_way(len(data), train_ratio, vote_ratio, TASK))  # type: ignore[return-value]


@FactoryRegistry.register_model_architecture("PYTORCH_COVID_XRAY", ["PYTORCH_COVID_XRAY"])
def prepare_learner(data_loaders: Loaders, learning_rate: float = 0.001, steps_per_epoch: int = 40,
                    vote_batches: int = 10, no_cuda: bool = False, vote_on_accuracy: bool = True,
                    **_kwargs: Any) -> PytorchLearner:
    """A :class:`PytorchLearner` with 0.2.x's perceptron, NLL loss, voting on categorical accuracy (or the loss)."""
    return task_learner(prepare_model(_kwargs.get("model_type", ModelType.MULTILAYER_PERCEPTRON)), data_loaders,
                        nn.NLLLoss(), categorical_accuracy if vote_on_accuracy else None, learning_rate,
                        steps_per_epoch, vote_batches, no_cuda)


def split_to_folders(data_dir: str, n_learners: int, data_split: Optional[List[float]] = None,
                     shuffle_seed: Optional[int] = None, output_folder: Optional[Path] = None,
                     **_kwargs: Any) -> List[str]:
    """Read the three ``.mat`` files, preprocess as 0.2.x did and split among ``n_learners`` folders."""
    import scipy.io as sio
    from sklearn.decomposition import KernelPCA
    from sklearn.preprocessing import MinMaxScaler

    source = source_folder(data_dir, TASK, "covid.mat, normal.mat and pneumonia.mat")
    paths = require_files(source, [f"{name}.mat" for name in CLASSES], TASK, "covid.mat, normal.mat, pneumonia.mat")
    tables = [sio.loadmat(str(path))[name] for path, name in zip(paths, CLASSES)]
    data = np.concatenate([t[:, :-1] for t in tables]).astype(np.float32)
    labels = np.concatenate([t[:, -1] for t in tables]).astype(np.int64)
    data = MinMaxScaler().fit_transform(data)
    data = KernelPCA(n_components=N_FEATURES, kernel="linear").fit_transform(data).astype(np.float32)
    return write_parts({DATA: data, LABELS: labels}, n_learners, data_split, shuffle_seed, output_folder,
                       "covid_xray")
