"""The per-learner folders of colearn 0.2.x's task modules, written and read without pickles (numpy only).

0.2.x's ``split_to_folders`` downloaded a data set, split it among learners and pickled each part into a numbered
folder; its ``prepare_data_loaders`` unpickled them. Here the source data must already be on disk (nothing is
downloaded) and each part is stored as ``.npy`` files read with ``allow_pickle=False``: a data file cannot run
code. Errors say which file is missing and how to make it.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from colearn.utils.data import get_data, split_list_into_fractions


class TaskDataError(FileNotFoundError):
    """A task's local data is missing or in a form colearn does not read (pickles)."""


def local_folder(location: Any, task: str, parameter: str = "location") -> Path:
    """The existing local folder ``location`` names (``file://`` accepted; remote locations refused)."""
    if location is None or str(location) == "":
        raise TaskDataError(f"{task}: {parameter} is required: the folder split_to_folders wrote for this learner")
    folder = Path(get_data(location))
    if not folder.is_dir():
        raise TaskDataError(f"{task}: {parameter}={str(location)!r} is not a local folder; make the learners' "
                            f"folders with {task}.split_to_folders(...) from local data first")
    return folder


def read_arrays(folder: Path, names: Sequence[str], task: str) -> List[np.ndarray]:
    """``<name>.npy`` of each name in ``folder`` (no pickles); a clear error for missing or pickled data."""
    arrays = []
    for name in names:
        path = folder / f"{name}.npy"
        if not path.is_file():
            pickled = folder / f"{name}.pickle"
            if pickled.is_file():
                raise TaskDataError(f"{task}: {pickled} is a colearn 0.2.x pickle, which colearn does not load "
                                    f"(unpickling runs code from the file); re-run {task}.split_to_folders on the "
                                    f"source data to write {path.name}")
            raise TaskDataError(f"{task}: {path} is missing; run {task}.split_to_folders(...) on local data first")
        arrays.append(np.load(path, allow_pickle=False))
    if len({len(a) for a in arrays}) > 1:
        raise TaskDataError(f"{task}: {[f'{n}.npy' for n in names]} in {folder} hold different numbers of rows")
    return arrays


def require_files(folder: Path, names: Sequence[str], task: str, what: str) -> List[Path]:
    """The paths of ``names`` in ``folder``; a clear error naming what to put where when one is missing."""
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise TaskDataError(f"{task}: {folder} lacks {missing}; put {what} there (colearn downloads nothing)")
    return [folder / name for name in names]


def source_folder(data_dir: Any, task: str, what: str) -> Path:
    """The local folder of a task's source data (``data_dir``), or an error saying what to put where."""
    if data_dir is None:
        raise TaskDataError(f"{task}.split_to_folders: data_dir is required: a local folder with {what} "
                            f"(colearn 0.2.x downloaded it; colearn downloads nothing)")
    return local_folder(data_dir, f"{task}.split_to_folders", "data_dir")


def three_way(n_items: int, train_ratio: float, vote_ratio: float, task: str) -> Tuple[slice, slice, slice]:
    """Consecutive train / vote / test slices of ``n_items`` (``train_ratio`` and ``vote_ratio`` of them, the
    rest for test); each must hold at least one item."""
    if not (0 < train_ratio and 0 <= vote_ratio and train_ratio + vote_ratio < 1):
        raise ValueError(f"{task}: train_ratio={train_ratio} and vote_ratio={vote_ratio} must be positive and sum "
                         f"to less than 1 (the rest is the test set)")
    train_end = int(train_ratio * n_items)
    vote_end = int((train_ratio + vote_ratio) * n_items)
    if train_end == 0 or vote_end == train_end or vote_end >= n_items:
        raise ValueError(f"{task}: {n_items} items cannot be split {train_ratio}/{vote_ratio}/rest with every "
                         f"part non-empty")
    return slice(0, train_end), slice(train_end, vote_end), slice(vote_end, n_items)


def train_vote_test(data_loaders: Sequence[Any]) -> Tuple[Any, Any, Any]:
    """(train, vote, test) from 0.2.8's three loaders or 0.2.x's older (train, test) pair, whose second part then
    votes and there is no test set."""
    if len(data_loaders) == 2:
        return data_loaders[0], data_loaders[1], None
    if len(data_loaders) == 3:
        return data_loaders[0], data_loaders[1], data_loaders[2]
    raise ValueError(f"data_loaders must be (train, vote, test) or (train, test), got {len(data_loaders)} parts")


def split_indices(n_items: int, n_learners: int, data_split: Optional[Sequence[float]],
                  shuffle_seed: Optional[int]) -> List[np.ndarray]:
    """0.2.x's split: a permutation from ``np.random.seed(shuffle_seed)`` cut into ``data_split`` fractions."""
    if data_split is None:
        data_split = [1 / n_learners] * n_learners
    if len(data_split) != n_learners:
        raise ValueError(f"data_split has {len(data_split)} fractions for n_learners={n_learners}")
    order = np.random.RandomState(shuffle_seed).permutation(n_items)
    return split_list_into_fractions(order, data_split)


def output_root(output_folder: Optional[Any], default_name: str) -> Path:
    return Path(output_folder) if output_folder is not None else Path(tempfile.gettempdir()) / default_name


def write_parts(arrays: Dict[str, np.ndarray], n_learners: int, data_split: Optional[Sequence[float]],
                shuffle_seed: Optional[int], output_folder: Optional[Any], default_name: str) -> List[str]:
    """Shuffle the rows of ``arrays`` and write learner ``i``'s part to ``<output_folder>/<i>/<name>.npy``."""
    n_items = len(next(iter(arrays.values())))
    root = output_root(output_folder, default_name)
    folders = []
    for index, rows in enumerate(split_indices(n_items, n_learners, data_split, shuffle_seed)):
        folder = root / str(index)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", np.ascontiguousarray(array[rows]), allow_pickle=False)
        folders.append(str(folder))
    return folders
