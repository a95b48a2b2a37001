"""MNIST-format readers (IDX, gzipped or not, and npz) on tiny fixtures written here."""
from __future__ import annotations


import numpy as np
import pytest

from colearn.data.mnist import (MNIST_FILES, IdxFormatError, load_mnist, mnist_task, parse_idx, read_idx,
                                  write_idx)


def tiny_mnist(rng: np.random.Generator, n_train: int = 30, n_test: int = 10, side: int = 6):
    return {"x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
            "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}


def write_tiny_mnist_dir(directory, arrays, gz: bool):
    for key, stem in MNIST_FILES.items():
        write_idx(directory / (stem + (".gz" if gz else "")), arrays[key])
    return directory


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path, gz):
    arrays = tiny_mnist(np.random.default_rng(0))
    data = load_mnist(write_tiny_mnist_dir(tmp_path, arrays, gz))
    for key, expected in arrays.items():
        assert np.array_equal(getattr(data, key), expected) and getattr(data, key).dtype == np.uint8
    assert data.image_shape == (6, 6)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = write_idx(tmp_path / "plain-name", array, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert np.array_equal(read_idx(path), array)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_types_keep_values_and_dtype(tmp_path, dtype):
    array = (np.arange(24) - 5).astype(dtype).reshape(2, 3, 4)
    loaded = read_idx(write_idx(tmp_path / "a.idx", array))
    assert loaded.dtype == np.dtype(dtype) and np.array_equal(loaded, array)


def test_npz_layout(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(1))
    np.savez(tmp_path / "mnist.npz", **arrays)
    data = load_mnist(tmp_path / "mnist.npz")
    assert np.array_equal(data.y_test, arrays["y_test"])
    np.savez(tmp_path / "partial.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="y_train"):
        load_mnist(tmp_path / "partial.npz")


def test_malformed_files_are_refused_clearly(tmp_path):
    good = (tmp_path / "g.idx")
    write_idx(good, np.zeros((2, 3), dtype=np.uint8))
    raw = good.read_bytes()
    with pytest.raises(IdxFormatError, match="file holds"):
        parse_idx(raw[:-1])  # truncated data
    with pytest.raises(IdxFormatError, match="not an IDX"):
        parse_idx(b"\x01" + raw[1:])
    with pytest.raises(IdxFormatError, match="data type"):
        parse_idx(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        arrays = tiny_mnist(np.random.default_rng(2))
        write_tiny_mnist_dir(tmp_path, arrays, gz=False)
        (tmp_path / MNIST_FILES["y_test"]).unlink()
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="y_train"):
        bad = tmp_path / "bad"
        bad.mkdir()
        write_tiny_mnist_dir(bad, {**arrays, "y_train": arrays["y_train"][:-1]}, gz=False)
        load_mnist(bad)


def test_mnist_task_scales_pixels_and_splits(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(3))
    task = mnist_task(write_tiny_mnist_dir(tmp_path, arrays, gz=True))
    assert task.x.shape == (40, 36) and task.x.dtype == np.float32 and 0 <= task.x.min() and task.x.max() <= 1
    assert task.image_shape == (6, 6) and task.y.dtype == np.int64
    assert np.allclose(task.x[0], arrays["x_train"][0].reshape(-1) / 255.0)
    assert len(mnist_task(tmp_path, which="test").y) == 10
    with pytest.raises(ValueError, match="which"):
        mnist_task(tmp_path, which="validation")
