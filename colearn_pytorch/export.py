"""Export a torch model to ONNX, or say clearly why that is not possible here."""
from __future__ import annotations

import importlib.util
import io
from typing import Any, Optional

import torch

from colearn.ml_interface import OnnxUnavailableError


def _example_from_model(model: torch.nn.Module) -> torch.Tensor:
    """A dummy input for models whose first layer is ``Linear`` (the input size is then known)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            parameter = next(model.parameters())
            return torch.zeros(1, module.in_features, dtype=parameter.dtype, device=parameter.device)
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            break
    raise OnnxUnavailableError(f"cannot infer an input shape for {type(model).__name__}; pass example_input")


def torch_model_to_onnx(model: torch.nn.Module, example_input: Optional[torch.Tensor] = None) -> Any:
    """Convert ``model`` to an ONNX ``ModelProto`` with torch's exporter.

    Needs the ``onnx`` package (torch's exporters build their output with it; the default exporter also
    needs ``onnxscript``). Raises :class:`~colearn.ml_interface.OnnxUnavailableError` with the reason
    when they are missing or the model cannot be exported; the model is not changed either way.
    """
    try:
        import onnx  # type: ignore[import-not-found]
    except ImportError as exc:
        raise OnnxUnavailableError("exporting a PyTorch model to ONNX needs the onnx package "
                                   "(pip install onnx onnxscript)") from exc
    if example_input is None:
        example_input = _example_from_model(model)
    was_training = model.training
    try:
        model.eval()
        if importlib.util.find_spec("onnxscript") is None:  # the legacy TorchScript exporter needs only onnx
            buffer = io.BytesIO()
            torch.onnx.export(model, (example_input,), buffer, dynamo=False, input_names=["input"],
                              output_names=["output"])
            return onnx.load_model_from_string(buffer.getvalue())
        program = torch.onnx.export(model, (example_input,), dynamo=True, verbose=False, input_names=["input"],
                                    output_names=["output"])
        return program.model_proto
    except Exception as exc:  # the exporters raise many types; the caller needs one
        raise OnnxUnavailableError(f"torch.onnx could not export {type(model).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
