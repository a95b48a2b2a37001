"""MNIST-format readers, kept here for existing imports; they live in :mod:`colearn.data.mnist` (numpy only)."""
from colearn.data.mnist import (MNIST_FILES, IdxFormatError, MnistData, load_mnist, mnist_task, parse_idx,  # noqa: F401
                                read_idx, write_idx)
