"""Pydantic metadata that travels as JSON beside the weights, validated on receipt; and layout checks.

Weights themselves go through colearn.encoding; what is not an array (a proposal's training summary,
a voter's scores and vote, an exported model's format) goes as JSON validated by the models here.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from colearn.grpc.chunking import WireError
from colearn.learner_utils import WeightsMismatchError, check_layout  # noqa: F401 (re-exported)
from colearn.ml_interface import ColearnModel, ModelFormat, ProposedWeights, Score, TrainingSummary, Weights


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class WeightsMeta(_Wire):
    """Metadata of a weights stream."""

    training_summary: Optional[TrainingSummary] = None


class VerdictMeta(_Wire):
    """A :class:`ProposedWeights` without its weights (the voter got those from the caller)."""

    vote_score: Score
    test_score: Score
    vote: Optional[bool] = None
    criterion: Optional[str] = None
    evaluation_results: Optional[Dict[str, Any]] = None


class ModelMeta(_Wire):
    """Metadata of an exported model's stream; the model itself is the encoded blob."""

    model_format: ModelFormat
    model_file: Optional[str] = None


def jsonable(value: Any) -> Any:
    """Plain JSON values for metadata that may hold numpy scalars or arrays (evaluation results)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot send a {type(value).__qualname__} in metadata")


def _parse(model: type[BaseModel], data: Dict[str, Any], what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or what
        raise WireError(f"invalid {what} metadata: {where}: {first['msg']}") from None


def weights_meta(weights: Weights) -> Dict[str, Any]:
    return WeightsMeta(training_summary=weights.training_summary).model_dump(mode="json")


def weights_from_wire(value: Any, metadata: Dict[str, Any]) -> Weights:
    meta = _parse(WeightsMeta, metadata, "weights")
    return Weights(weights=value, training_summary=meta.training_summary)


def verdict_json(verdict: ProposedWeights) -> str:
    meta = VerdictMeta(vote_score=verdict.vote_score, test_score=verdict.test_score, vote=verdict.vote,
                       criterion=verdict.criterion,
                       evaluation_results=jsonable(verdict.evaluation_results))
    return meta.model_dump_json()


def verdict_from_json(text: str, weights: Weights) -> ProposedWeights:
    try:
        meta = VerdictMeta.model_validate_json(text)
    except ValidationError as exc:
        raise WireError(f"invalid verdict: {exc.errors()[0]['msg']}") from None
    return ProposedWeights(weights=weights, **meta.model_dump())


def model_meta(model: ColearnModel) -> Dict[str, Any]:
    return ModelMeta(model_format=model.model_format, model_file=model.model_file).model_dump(mode="json")


def model_payload(model: ColearnModel) -> Any:
    """What of an exported model can be encoded: ONNX protos become their serialized bytes."""
    payload = model.model
    if hasattr(payload, "SerializeToString"):
        return payload.SerializeToString()
    return payload


def model_from_wire(value: Any, metadata: Dict[str, Any]) -> ColearnModel:
    meta = _parse(ModelMeta, metadata, "model")
    return ColearnModel(model_format=meta.model_format, model_file=meta.model_file, model=value)
