"""Read MNIST-format data from local files: IDX files (gzipped or not) or an ``.npz`` archive.

Nothing is downloaded. ``load_mnist(path)`` takes either a directory holding the four standard files
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``), or an ``.npz`` with ``x_train``, ``y_train``,
``x_test``, ``y_test`` (the layout of Keras' ``mnist.npz``). Needs only numpy.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

PathLike = Union[str, Path]
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


class IdxFormatError(ValueError):
    """A file is not a valid IDX file (bad magic, unknown type, or size not matching its header)."""


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        return gzip.decompress(raw)
    return raw


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into an array of its native dtype and shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{source}: not an IDX file (the first two bytes must be zero)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX data type 0x{code:02x}")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise IdxFormatError(f"{source}: truncated header ({ndim} dimensions announced)")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise IdxFormatError(f"{source}: header says shape {shape} of {dtype.name} ({expected} bytes) but the "
                             f"file holds {len(raw) - header_end} data bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path: PathLike, array: np.ndarray, *, compress: Optional[bool] = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends with ``.gz``)."""
    path, array = Path(path), np.asarray(array)
    code = IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"array dtype {array.dtype} has no IDX type; "
                         f"use uint8, int8, int16, int32, float32 or float64")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(IDX_DTYPES[code]).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@dataclass
class MnistData:
    """Images (n, height, width) and integer labels (n,) of a train and a test set, as stored."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(f"x_{split} {x.shape} and y_{split} {y.shape} do not describe the same samples")

    @property
    def image_shape(self) -> Tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), f"{stem.replace('-idx', '.idx')}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory} has no {stem} (or {stem}.gz); expected the four MNIST IDX files")


def load_mnist(path: PathLike) -> MnistData:
    """Load MNIST-format data from a directory of IDX files or from an ``.npz`` archive."""
    path = Path(path)
    if path.is_dir():
        arrays = {key: read_idx(_find(path, stem)) for key, stem in MNIST_FILES.items()}
    elif path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in MNIST_FILES if key not in archive.files]
            if missing:
                raise ValueError(f"{path} lacks {missing}; expected x_train, y_train, x_test, y_test")
            arrays = {key: archive[key] for key in MNIST_FILES}
    else:
        raise FileNotFoundError(f"{path} is neither a directory of MNIST IDX files nor an .npz file")
    return MnistData(**arrays)


def mnist_task(path: PathLike, *, name: str = "mnist", which: str = "all", max_value: float = 255.0):
    """MNIST-format data as a :class:`colearn.data.tasks.Task` (pixels / ``max_value`` in [0, 1], flat rows).

    ``which``: ``"train"``, ``"test"`` or ``"all"`` (both), to split among learners with
    :func:`colearn.data.splits.split_learner_data`.
    """
    from colearn.data.tasks import Task

    data = load_mnist(path)
    parts = {"train": [(data.x_train, data.y_train)], "test": [(data.x_test, data.y_test)],
             "all": [(data.x_train, data.y_train), (data.x_test, data.y_test)]}
    if which not in parts:
        raise ValueError(f"which must be 'train', 'test' or 'all', got {which!r}")
    x = np.concatenate([xs.reshape(len(xs), -1) for xs, _ in parts[which]]).astype(np.float32) / max_value
    y = np.concatenate([ys for _, ys in parts[which]]).astype(np.int64)
    return Task(name=name, x=x, y=y, n_classes=int(y.max()) + 1, image_shape=data.image_shape,
                description=f"MNIST-format data from {path}")
