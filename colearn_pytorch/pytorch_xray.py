"""colearn 0.2.x's chest X-ray (pneumonia) task for PyTorch, registered as ``PYTORCH_XRAY``.

Local data only: a folder of JPEG images whose paths contain ``NORMAL`` or ``PNEUMONIA`` (the Kaggle layout
``NORMAL/*.jpeg``, ``PNEUMONIA/*.jpeg``). ``split_to_folders`` links each learner's share into numbered folders
(0.2.x removed old folders with ``rm -r`` through a shell; here ``shutil.rmtree``).
"""
from __future__ import annotations

import os
import random as rand
import shutil
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as nn_func
from torch.utils.data import DataLoader, Dataset

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import TaskDataError, local_folder, output_root, source_folder
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_pytorch.pytorch_learner import PytorchLearner
from colearn_pytorch.task_learners import loader_kwargs, task_learner
from colearn_pytorch.utils import auc_from_logits

TASK = "colearn_pytorch.pytorch_xray"
CATEGORIES = ("NORMAL", "PNEUMONIA")
Loaders = Tuple[DataLoader, DataLoader, DataLoader]


class ModelType(Enum):
    CONV2D = 1


class TorchXrayConv2DModel(nn.Module):
    """0.2.x's model for 128x128 greyscale images: conv 32 + batch norm, 4x4 max pool, conv 64 + batch norm,
    global max pool, one logit (take the sigmoid for the probability of pneumonia)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, (3, 3), padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, (3, 3), padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(nn_func.relu(self.conv1(x)))
        x = nn_func.max_pool2d(x, kernel_size=(4, 4))
        x = self.bn2(nn_func.relu(self.conv2(x)))
        x = nn_func.adaptive_max_pool2d(x, 1)  # 0.2.x: a 32x32 max pool, i.e. global on 128x128 inputs
        return self.fc1(x.view(-1, 64))


def prepare_model(model_type: ModelType = ModelType.CONV2D) -> nn.Module:
    if model_type != ModelType.CONV2D:
        raise ValueError(f"model_type {model_type} is not part of the ModelType enum")
    return TorchXrayConv2DModel()


def _category(path: Path) -> Optional[int]:
    text = str(path)
    return 0 if "NORMAL" in text else 1 if "PNEUMONIA" in text else None


class XrayDataset(Dataset):
    """Greyscale X-ray images resized to ``width`` x ``height`` in [0, 1], label 0 (NORMAL) or 1 (PNEUMONIA).

    ``train``/``train_ratio``/``seed`` select a shuffled share of ``data_dir`` (0.2.x's signature); ``cases``
    gives the files directly instead.
    """

    def __init__(self, data_dir: str, transform: Any = None, train: bool = True, train_ratio: float = 0.96,
                 seed: Optional[int] = None, width: int = 128, height: int = 128,
                 cases: Optional[Sequence[Path]] = None, **_kwargs: Any):
        self.width, self.height, self.seed, self.transform = width, height, seed, transform
        if cases is None:
            all_cases = sorted(p for p in Path(data_dir).rglob("*.jp*") if _category(p) is not None)
            if not all_cases:
                raise TaskDataError(f"{TASK}: no NORMAL/PNEUMONIA .jpeg images under {data_dir}")
            rand.Random(seed).shuffle(all_cases)
            n_cases = int(train_ratio * len(all_cases))
            cases = all_cases[:n_cases] if train else all_cases[n_cases:]
        self.cases = list(cases)
        self.diagnosis = [_category(case) for case in self.cases]

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, idx: Any) -> Tuple[np.ndarray, np.ndarray]:
        indices = idx.tolist() if torch.is_tensor(idx) else [idx]
        data = np.zeros((len(indices), self.width, self.height), dtype=np.float32)
        labels = np.zeros(len(indices), dtype=np.float32)
        for j, index in enumerate(indices):
            data[j] = self.to_rgb_normalize_and_resize(self.cases[index], self.width, self.height)
            labels[j] = self.diagnosis[index]
        sample = (data, labels)
        return self.transform(sample) if self.transform else sample

    @staticmethod
    def to_rgb_normalize_and_resize(filename: Any, width: int, height: int) -> np.ndarray:
        """The image as a greyscale array of ``width`` x ``height`` in [0, 1]."""
        from PIL import Image

        with Image.open(str(filename)) as img:
            grey = img.resize((width, height)).convert("L")
            return np.asarray(grey, dtype=np.float32).reshape(1, grey.size[0], grey.size[1]) / 255


@FactoryRegistry.register_dataloader("PYTORCH_XRAY")
def prepare_data_loaders(location: Optional[str] = None, train_ratio: float = 0.8, vote_ratio: float = 0.1,
                         batch_size: int = 8, no_cuda: bool = False, **_kwargs: Any) -> Loaders:
    """Train, vote and test loaders over the images in ``location`` (a shuffled three-way split)."""
    from colearn.compat.task_files import three_way

    folder = local_folder(location if location is not None else _kwargs.get("train_folder"), TASK)
    cases = sorted(p for p in folder.rglob("*.jp*") if _category(p) is not None)
    if not cases:
        raise TaskDataError(f"{TASK}: no NORMAL/PNEUMONIA .jpeg images under {folder}")
    rand.Random(_kwargs.get("seed")).shuffle(cases)
    return tuple(DataLoader(XrayDataset(str(folder), cases=cases[part]), batch_size=batch_size, shuffle=True,
                            **loader_kwargs(no_cuda))
                 for part in three_way(len(cases), train_ratio, vote_ratio, TASK))  # type: ignore[return-value]


@FactoryRegistry.register_model_architecture("PYTORCH_XRAY", ["PYTORCH_XRAY"])
def prepare_learner(data_loaders: Loaders, learning_rate: float = 0.001, steps_per_epoch: int = 40,
                    vote_batches: int = 10, no_cuda: bool = False, vote_on_accuracy: bool = True,
                    **_kwargs: Any) -> PytorchLearner:
    """A :class:`PytorchLearner` with 0.2.x's model, BCE-with-logits loss, voting on AUC (or on the loss)."""
    return task_learner(prepare_model(_kwargs.get("model_type", ModelType.CONV2D)), data_loaders,
                        nn.BCEWithLogitsLoss(reduction="mean"), auc_from_logits if vote_on_accuracy else None,
                        learning_rate, steps_per_epoch, vote_batches, no_cuda)


def split_to_folders(data_dir: str, n_learners: int, data_split: Optional[List[float]] = None,
                     shuffle_seed: Optional[int] = None, output_folder: Optional[Path] = None, train: bool = True,
                     **_kwargs: Any) -> List[str]:
    """Link each learner's share of every category folder in ``data_dir`` into ``<output_folder>/<i>/<CATEGORY>``."""
    source = source_folder(data_dir, TASK, "NORMAL/ and PNEUMONIA/ folders of .jpeg images")
    root = output_root(output_folder, "train_xray" if train else "test_xray")
    data_split = data_split if data_split is not None else [1 / n_learners] * n_learners
    folders = [root / str(i) for i in range(n_learners)]
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
        for category in CATEGORIES:
            (folder / category).mkdir(parents=True)
    for subdir in sorted(p for p in source.iterdir() if p.is_dir()):
        cases = sorted(subdir.rglob("*.jp*"))
        if not cases:
            raise TaskDataError(f"{TASK}: no .jpeg images in {subdir}")
        order = np.random.RandomState(shuffle_seed).permutation(len(cases))
        start = 0
        for folder, fraction in zip(folders, data_split):
            stop = start + int(fraction * len(cases))
            for index in order[start:stop]:
                category = _category(cases[index])
                if category is not None:
                    link = folder / CATEGORIES[category] / cases[index].name
                    os.symlink(cases[index].resolve(), link)
            start = stop
    return [str(folder) for folder in folders]
