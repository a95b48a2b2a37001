"""Export a torch model to ONNX, or say clearly why that is not possible here."""
from __future__ import annotations

import importlib.util
import io
import warnings
from typing import Any, Optional

import numpy as np
import torch

from colearn.ml_interface import ColearnModel, ModelFormat, OnnxUnavailableError, Prediction, PredictionRequest


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


class ModelExport:
    """``PytorchLearner``'s export and prediction (the MLI's ``mli_get_current_model`` and
    ``mli_make_prediction``), kept apart from training and voting."""

    def _example_input(self) -> torch.Tensor:
        for data, _ in self.vote_loader:
            if len(data):
                return data[:1].to(self.device)
        raise OnnxUnavailableError("vote_loader has no data to trace the model with")

    def mli_get_current_model(self) -> ColearnModel:
        """Export the held model: ONNX when the installed exporter can, else the typed state dict.

        With ``model_export="auto"`` a failed ONNX export falls back to
        ``ColearnModel(model_format=PYTORCH_STATE_DICT, model=<ordered dict of arrays>)`` with a
        ``RuntimeWarning`` giving the reason; ``"onnx"`` raises :class:`OnnxUnavailableError` instead.
        """
        if self.model_export != "state_dict":
            try:
                onnx_model = torch_model_to_onnx(self.plain_model, example_input=self._example_input())
                return ColearnModel(model_format=ModelFormat.ONNX, model_file="", model=onnx_model)
            except OnnxUnavailableError as exc:
                if self.model_export == "onnx":
                    raise
                warnings.warn(f"ONNX export not possible ({exc}); exporting the state dict as typed arrays "
                              f"(PYTORCH_STATE_DICT) instead", RuntimeWarning, stacklevel=2)
        return ColearnModel(model_format=ModelFormat.PYTORCH_STATE_DICT, model=self._current_arrays())

    def mli_make_prediction(self, request: PredictionRequest) -> Prediction:
        """Model outputs for ``request.input_data`` (array-like of inputs), as a numpy array."""
        self.model.eval()
        with torch.no_grad():
            inputs = torch.as_tensor(np.asarray(request.input_data, dtype=np.float32), device=self.device)
            outputs = self.model(inputs)
        return Prediction(name=request.name, prediction_data=outputs.cpu().numpy())
