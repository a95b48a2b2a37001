"""Load the user's own labelled data from local files (CSV, ``.npz``) into a :class:`~colearn.data.tasks.Task`.

Nothing is downloaded and nothing is unpickled: CSV files are read with the standard ``csv`` module and
``.npz`` files with ``allow_pickle=False``. Labels of any kind (strings, integers like 3/7/9) are
encoded to ``0..k-1`` in sorted order; the original labels are kept in ``Task.class_names``. Features
are scaled to [0, 1]:

- ``scale="minmax"``: each feature with its own minimum and maximum over the file (the bounds are kept
  on the task as ``feature_min``/``feature_max``);
- ``scale="global"``: one minimum and maximum over all values (right for images, e.g. pixels 0..255);
- ``scale="none"``: the values must already lie in [0, 1].
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from colearn.data.tasks import Task, min_max_scale

SCALES = ("minmax", "global", "none")


class DataFileError(ValueError):
    """A local data file cannot be turned into a task; the message names the file (and row/column)."""


def encode_labels(values: Sequence, source: str) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """Map labels to ``0..k-1`` in sorted order (numbers numerically, otherwise as strings)."""
    raw = np.asarray(values)
    if raw.ndim != 1 or raw.size == 0:
        raise DataFileError(f"{source}: labels must be a non-empty 1-d sequence, got shape {raw.shape}")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        raise DataFileError(f"{source}: labels contain NaN or infinite values")
    if raw.dtype.kind not in "biufUS":
        raise DataFileError(f"{source}: labels of dtype {raw.dtype} are not supported (use numbers or strings)")
    classes, encoded = np.unique(raw, return_inverse=True)
    if len(classes) < 2:
        raise DataFileError(f"{source}: labels have only {len(classes)} distinct value(s); need at least 2 classes")
    names = tuple(_label_name(c) for c in classes)
    return encoded.astype(np.int64).reshape(-1), names


def _label_name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def scale_features(x: np.ndarray, scale: str, source: str) -> Tuple[np.ndarray, Optional[np.ndarray],
                                                                    Optional[np.ndarray]]:
    """Scale features to [0, 1] as ``scale`` says (see the module docstring)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if not np.all(np.isfinite(x)):
        raise DataFileError(f"{source}: features contain NaN or infinite values")
    if scale == "minmax":
        flat, low, high = min_max_scale(x.reshape(len(x), -1))
        return flat.reshape(x.shape), low, high
    if scale == "global":
        low, high = float(x.min()), float(x.max())
        span = high - low if high > low else 1.0
        return ((x - low) / span).astype(np.float32), np.asarray(low), np.asarray(high)
    if x.min() < 0 or x.max() > 1:
        raise DataFileError(f"{source}: scale='none' needs features in [0, 1], found [{x.min()}, {x.max()}]")
    return x.astype(np.float32), None, None


def _target_index(target: Union[str, int], header: Optional[List[str]], n_columns: int, path: Path) -> int:
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise TypeError(f"target must be a column name or index, got {type(target).__name__}")
    if isinstance(target, int):
        if not -n_columns <= target < n_columns:
            raise DataFileError(f"{path}: target column index {target} is out of range for {n_columns} columns")
        return target % n_columns
    if header is None:
        if target.lstrip("-").isdigit():
            return _target_index(int(target), header, n_columns, path)
        raise DataFileError(f"{path}: target column {target!r} needs a header row (or pass a column index)")
    if target not in header:
        raise DataFileError(f"{path}: no target column {target!r}; columns are {header}")
    return header.index(target)


def load_csv(path: Union[str, Path], target: Union[str, int] = "label", *, delimiter: str = ",",
             header: bool = True, scale: str = "minmax", name: Optional[str] = None,
             image_shape: Optional[Tuple[int, ...]] = None) -> Task:
    """Load a CSV file with one sample per row: numeric feature columns and one target column.

    ``target`` is the target column's name (needs the header row) or its index (negative counts from
    the end). Errors name the file, and the line and column when one is at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1)
                if row and any(cell.strip() for cell in row)]
    columns: Optional[List[str]] = None
    if header:
        if not rows:
            raise DataFileError(f"{path}: the file is empty")
        columns = [cell.strip() for cell in rows.pop(0)[1]]
    if not rows:
        raise DataFileError(f"{path}: the file has no data rows")
    n_columns = len(columns) if columns is not None else len(rows[0][1])
    if n_columns < 2:
        raise DataFileError(f"{path}: need at least one feature column and the target column, found {n_columns}")
    label_at = _target_index(target, columns, n_columns, path)
    names = columns or [f"column {i}" for i in range(n_columns)]
    features = np.empty((len(rows), n_columns - 1), dtype=np.float64)
    labels: List[str] = []
    for r, (line, row) in enumerate(rows):
        if len(row) != n_columns:
            raise DataFileError(f"{path}, line {line}: {len(row)} fields, expected {n_columns}")
        labels.append(row[label_at].strip())
        values = [cell for c, cell in enumerate(row) if c != label_at]
        for c, cell in enumerate(values):
            try:
                value = float(cell)
            except ValueError:
                column = names[c if c < label_at else c + 1]
                raise DataFileError(f"{path}, line {line}, column {column!r}: {cell!r} is not a number") from None
            if not math.isfinite(value):
                column = names[c if c < label_at else c + 1]
                raise DataFileError(f"{path}, line {line}, column {column!r}: {cell!r} is not a finite number")
            features[r, c] = value
    if any(label == "" for label in labels):
        line = rows[labels.index("")][0]
        raise DataFileError(f"{path}, line {line}, column {names[label_at]!r}: the target is empty")
    y, class_names = encode_labels(_numeric_if_possible(labels), f"{path}, column {names[label_at]!r}")
    x, low, high = scale_features(features, scale, str(path))
    if image_shape is not None and int(np.prod(image_shape)) != x.shape[1]:
        raise ValueError(f"image_shape {image_shape} does not match {x.shape[1]} feature columns of {path}")
    return Task(name or path.stem, x, y, len(class_names), tuple(image_shape) if image_shape else None,
                f"{len(y)} samples, {x.shape[1]} features, target {names[label_at]!r} from {path}",
                class_names, low, high)


def _numeric_if_possible(labels: List[str]) -> np.ndarray:
    try:
        return np.asarray([float(label) for label in labels])
    except ValueError:
        return np.asarray(labels)


def load_npz(path: Union[str, Path], x_key: str = "x", y_key: str = "y", *, scale: Optional[str] = None,
             name: Optional[str] = None) -> Task:
    """Load features ``x_key`` and labels ``y_key`` from a ``.npz`` file (never unpickles anything).

    ``x`` is (n_samples, n_features) or (n_samples, *image_shape); images are flattened into rows and
    their shape kept as ``image_shape``. ``scale`` defaults to ``"global"`` for images and ``"minmax"``
    otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (x_key, y_key) if key not in archive.files]
            if missing:
                raise DataFileError(f"{path}: no array named {missing[0]!r}; the file holds {archive.files}")
            x, y = archive[x_key], archive[y_key]
    except DataFileError:
        raise
    except ValueError as exc:  # object arrays would need pickle, which is refused
        raise DataFileError(f"{path}: cannot read arrays without unpickling ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npz file ({exc})") from None
    if x.dtype.kind not in "biuf":
        raise DataFileError(f"{path}: array {x_key!r} has dtype {x.dtype}; features must be numeric")
    if x.ndim < 2:
        raise DataFileError(f"{path}: array {x_key!r} has shape {x.shape}; need (n_samples, n_features...)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataFileError(f"{path}: array {y_key!r} has shape {y.shape}; need ({len(x)},) to match {x_key!r}")
    image_shape = tuple(int(d) for d in x.shape[1:]) if x.ndim > 2 else None
    scale = scale or ("global" if image_shape else "minmax")
    flat, low, high = scale_features(x.reshape(len(x), -1).astype(np.float64), scale, f"{path}, array {x_key!r}")
    labels, class_names = encode_labels(y, f"{path}, array {y_key!r}")
    return Task(name or path.stem, flat, labels, len(class_names), image_shape,
                f"{len(labels)} samples, {flat.shape[1]} features from {path}", class_names, low, high)


__all__ = ["DataFileError", "load_csv", "load_npz", "encode_labels", "scale_features", "SCALES"]
