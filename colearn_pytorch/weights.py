"""Weights that leave or enter a torch model: an ordered mapping name -> tensor or numpy array, never pickles.

Outgoing weights are copies of the state dict in its order, with dtype and shape kept (tensors in process;
the codec turns them into typed arrays at process and machine boundaries). Incoming
weights are validated (names, order, shapes, dtypes) against the model before anything is loaded, so
a mismatch raises :class:`~colearn.learner_utils.WeightsMismatchError` and leaves the model unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Mapping

import numpy as np
import torch

from colearn.learner_utils import WeightsMismatchError, check_named_arrays_match


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError as exc:  # bfloat16 and friends have no numpy equivalent
        raise WeightsMismatchError(f"torch dtype {dtype} has no numpy equivalent; cast the model "
                                   f"(e.g. model.float()) before using it in colearn") from exc


def state_dict_to_arrays(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, np.ndarray]":
    """Copy a state dict into an ordered dict of numpy arrays (same order, dtypes and shapes)."""
    arrays: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for name, tensor in state_dict.items():
        _numpy_dtype(tensor.dtype)
        arrays[name] = tensor.detach().cpu().numpy().copy()
    return arrays


def model_spec(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """Zero-memory stand-ins (right shape and dtype) for validating received weights against a model."""
    return {name: np.broadcast_to(np.zeros((), dtype=_numpy_dtype(t.dtype)), tuple(t.shape))
            for name, t in state_dict.items()}


def _as_array(value: Any) -> Any:
    if isinstance(value, torch.Tensor):  # local 0.2.x-style weights hold tensors; the wire carries numpy only
        return value.detach().cpu().numpy()
    return value


def as_arrays(received: Any) -> Any:
    """A mapping's tensors as numpy arrays (views, no copies); anything else unchanged."""
    if isinstance(received, Mapping):
        return {name: _as_array(value) for name, value in received.items()}
    return received


def validated_state_dict(received: Any, state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Check ``received`` against the model's state dict and return it as tensors ready to load.

    Raises :class:`WeightsMismatchError` naming the offending entry; nothing is loaded here.
    """
    checked = check_named_arrays_match(as_arrays(received), model_spec(state_dict))
    return OrderedDict((name, torch.tensor(array)) for name, array in checked.items())


def snapshot(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Detached clones of a state dict's tensors (on their device), to restore a model later."""
    return OrderedDict((name, tensor.detach().clone()) for name, tensor in state_dict.items())
