"""Helpers for Keras learners: 0.2.x's ``normalize_img``, loaders (datasets, numpy pairs, and whatever else
``model.fit`` takes), batch sizes, optimizers from 0.2.x arguments, optimizer reset."""
from __future__ import annotations

import collections.abc
import inspect
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

ArrayPair = Tuple[np.ndarray, np.ndarray]
Loader = Union[tf.data.Dataset, ArrayPair, keras.utils.PyDataset, Any]
"""A ``tf.data.Dataset`` or an ``(x, y)`` pair, or anything else ``model.fit`` / ``model.evaluate`` take as ``x``:
a ``keras.utils.PyDataset`` / ``Sequence`` (and the iterators of ``ImageDataGenerator.flow`` /
``flow_from_directory``, which are ``PyDataset`` subclasses), a torch ``DataLoader``, a Python generator."""
DEFAULT_BATCH_SIZE = 32  # Keras' own default for fit and evaluate on arrays


def normalize_img(image: tf.Tensor, label: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Normalize images: ``uint8`` -> ``float32`` in [0, 1] (for ``dataset.map``, as in colearn 0.2.x)."""
    return tf.cast(image, tf.float32) / 255.0, label


def is_array_pair(loader: Any) -> bool:
    """True for an ``(x, y)`` pair of array-likes with the same number of rows."""
    return (isinstance(loader, (tuple, list)) and len(loader) == 2
            and all(hasattr(part, "shape") and len(part.shape) >= 1 for part in loader))


def is_keras_input(loader: Any) -> bool:
    """True for data Keras iterates itself (passed to ``fit``/``evaluate`` unchanged): a ``PyDataset`` (or
    ``Sequence``), a torch ``DataLoader`` or any iterator (a generator)."""
    if isinstance(loader, keras.utils.PyDataset):
        return True
    if type(loader).__module__.startswith("torch.utils.data"):
        return True
    return isinstance(loader, collections.abc.Iterator)


def check_loader(loader: Any, name: str, *, optional: bool = False) -> None:
    """Refuse what ``model.fit`` cannot take (see :data:`Loader`), naming the parameter."""
    if loader is None and optional:
        return
    if isinstance(loader, tf.data.Dataset) or is_keras_input(loader):
        return
    if is_array_pair(loader):
        x, y = loader
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}: x has {x.shape[0]} rows but y has {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: the (x, y) arrays are empty")
        return
    raise TypeError(f"{name} must be a tf.data.Dataset or an (x, y) pair of numpy arrays, or another input "
                    f"model.fit takes (a keras.utils.PyDataset / Sequence such as an ImageDataGenerator iterator, "
                    f"a torch DataLoader, a generator), got {type(loader).__name__}")


def to_dataset(loader: Loader, *, batch_size: int = DEFAULT_BATCH_SIZE, shuffle: bool = False,
               seed: Optional[int] = None, repeat: bool = False) -> tf.data.Dataset:
    """A batched dataset for ``loader``: ``(x, y)`` pairs are batched (reshuffled every pass with ``seed`` when
    ``shuffle``; endless with ``repeat``, for ``steps_per_epoch``); datasets and the other inputs Keras takes
    pass through unchanged."""
    if isinstance(loader, tf.data.Dataset) or is_keras_input(loader):
        return loader
    x, y = (np.asarray(part) for part in loader)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size)


def iter_batches(loader: Any) -> Iterator[Any]:
    """The batches of a non-dataset loader: a ``PyDataset``'s by index, else by iterating it."""
    if isinstance(loader, keras.utils.PyDataset):
        count = loader.num_batches
        if count is None:
            raise ValueError("the PyDataset is infinite (num_batches is None); give a finite one")
        return (loader[index] for index in range(count))
    return iter(loader)


def _leading_length(batch: Any) -> int:
    first = tf.nest.flatten(batch)[0]
    shape = getattr(first, "shape", ())
    return int(shape[0]) if len(shape) else 1


def make_loader(images: np.ndarray, labels: np.ndarray, batch_size: int = 32,
                shuffle_seed: Optional[int] = None) -> tf.data.Dataset:
    """0.2.x's ``_make_loader``: a cached dataset of ``(images, labels)``, shuffled every pass, batched, prefetched."""
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).cache()
    dataset = dataset.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


_make_loader = make_loader  # 0.2.x's name


def dataset_batch_size(dataset: Any) -> int:
    """The batch size of a batched loader: the ``batch`` in a dataset's pipeline (or a ``PyDataset``'s
    ``batch_size``), else its first batch's length."""
    if not isinstance(dataset, tf.data.Dataset):
        size = getattr(dataset, "batch_size", None)
        if isinstance(size, int) and size > 0:
            return size
        if isinstance(dataset, collections.abc.Iterator) and not isinstance(dataset, keras.utils.PyDataset):
            raise ValueError("the batch size of a generator cannot be read without using it up; give "
                             "model_fit_kwargs={'batch_size': ...}")
        for batch in iter_batches(dataset):
            return _leading_length(batch)
        raise ValueError("the loader is empty, so it has no batch size")
    node: Any = dataset
    for _ in range(64):  # walk map/prefetch/cache/... back to the batch (tf.data keeps it as _batch_size)
        size = getattr(node, "_batch_size", None)
        if size is not None:
            try:
                return int(size)
            except (TypeError, ValueError):
                break
        node = getattr(node, "_input_dataset", None)
        if node is None:
            break
    for element in dataset.take(1):
        first = tf.nest.flatten(element)[0]
        return int(first.shape[0]) if first.shape.rank else 1
    raise ValueError("the dataset is empty, so it has no batch size")


def materialize(loader: Loader) -> ArrayPair:
    """All ``(x, y)`` examples of a loader as numpy arrays (a dataset must be finite, batched, of (x, y))."""
    if is_array_pair(loader):
        return np.asarray(loader[0]), np.asarray(loader[1])
    xs, ys = [], []
    batches = loader.as_numpy_iterator() if isinstance(loader, tf.data.Dataset) else iter_batches(loader)
    for element in batches:
        if isinstance(element, list):
            element = tuple(element)
        if not (isinstance(element, tuple) and len(element) == 2):
            raise ValueError("train_loader: differential privacy needs a dataset of (x, y) batches "
                             "(sample weights are not supported)")
        xs.append(np.asarray(element[0]))
        ys.append(np.asarray(element[1]))
    if not xs:
        raise ValueError("train_loader: the dataset is empty")
    return np.concatenate(xs), np.concatenate(ys)


def check_call_kwargs(function: Callable[..., Any], kwargs: Optional[dict], name: str,
                      reserved: Iterable[str] = ()) -> dict:
    """Return a copy of ``kwargs`` after checking each key is a named parameter of ``function``.

    Keras 3's ``evaluate`` swallows unknown keywords in ``**kwargs``; this refuses them up front, naming the key.
    """
    kwargs = dict(kwargs or {})
    params = inspect.signature(function).parameters
    named = {key for key, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    reserved = set(reserved)
    for key in kwargs:
        if key in reserved:
            raise ValueError(f"{name}: {key!r} is set by the learner (it passes its loaders); remove it")
        if key not in named:
            raise ValueError(f"{name}: {key!r} is not an argument of model.{function.__name__}; "
                             f"valid ones are {sorted(named - reserved)}")
    return kwargs


def make_optimizer(optimizer: Union[str, type], lr: Optional[float] = None, **kwargs: Any) -> Any:
    """A Keras 3 optimizer from 0.2.x-style arguments: ``lr`` (refused by Keras 3) becomes ``learning_rate``.

    ``make_optimizer(keras.optimizers.Adam, lr=0.001)`` == ``keras.optimizers.Adam(learning_rate=0.001)``;
    ``optimizer`` may also be a name (``"adam"``).
    """
    if lr is not None:
        if "learning_rate" in kwargs:
            raise ValueError("give lr or learning_rate, not both")
        kwargs["learning_rate"] = lr
    if isinstance(optimizer, str):
        optimizer = type(keras.optimizers.get(optimizer))
    return optimizer(**kwargs)


class OptimizerReset:
    """Puts a compiled model's optimizer back in its freshly built state (zero moments, step 0).

    Keras 3 replacement for 0.2.x's recompile with the private ``_get_compile_args``: the initial values of
    the optimizer's variables come from a twin built from ``optimizer.get_config()``, and resetting assigns
    them, so nothing is recompiled and no ``tf.function`` is retraced.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self._optimizer: Any = None
        self._initial: list[np.ndarray] = []

    def _snapshot(self) -> None:
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("model: compile the model with an optimizer before giving it to the learner")
        variables = self.model.trainable_variables
        if not optimizer.built:
            optimizer.build(variables)
        twin = type(optimizer).from_config(optimizer.get_config())
        twin.build(variables)
        initial = [np.array(v.numpy()) for v in twin.variables]
        if [tuple(v.shape) for v in optimizer.variables] != [a.shape for a in initial]:
            raise ValueError(f"cannot reset a {type(optimizer).__name__}: a fresh copy built from its config "
                             "has different variables; pass need_reset_optimizer=False")
        self._optimizer, self._initial = optimizer, initial

    def reset(self) -> None:
        """Assign the optimizer's initial variable values (re-snapshot if the model was recompiled)."""
        if self._optimizer is not self.model.optimizer:
            self._snapshot()
        for variable, value in zip(self._optimizer.variables, self._initial):
            variable.assign(value)
