"""The Machine Learning Interface (MLI): what every collective learner implements.

Names and fields follow colearn 0.2.x so that learners written for it run unchanged. The pydantic
models are v2 models whose optional fields default to ``None`` (as they did under pydantic v1).
"""
from __future__ import annotations

import abc
from enum import Enum, IntEnum
from typing import Any, Dict, Optional, Union

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())


class ProposalRefused(ValueError):
    """A learner cannot score or adopt proposed weights because of the weights themselves (wrong layout,
    non-finite values, implausible state). Voters answer this with a *rejection*, never an abstention."""


class DiffPrivBudget(_Model):
    """Differential-privacy budget of a learner: the target and what is spent so far."""

    target_epsilon: float
    target_delta: float
    consumed_epsilon: float
    consumed_delta: float


class ErrorCodes(Enum):
    """Why a learner could not do what it was asked (reported as data, not raised)."""

    DP_BUDGET_EXCEEDED = 1


class TrainingSummary(_Model):
    """What a proposer reports about the training behind a proposal."""

    dp_budget: Optional[DiffPrivBudget] = None
    error_code: Optional[ErrorCodes] = None


class Weights(_Model):
    """A model's weights in whatever form the learner uses (typed arrays, never pickles, on the wire)."""

    weights: Any
    training_summary: Optional[TrainingSummary] = None


class DiffPrivConfig(_Model):
    """Settings for differentially private training (DP-SGD)."""

    target_epsilon: float
    target_delta: float
    max_grad_norm: float
    noise_multiplier: float


Score = Union[float, Dict[str, float]]


class ProposedWeights(_Model):
    """A voter's verdict on proposed weights: its scores of them and its vote.

    ``vote_score``/``test_score`` are floats (colearn 0.2.8) or dicts of metric -> value keyed by
    ``criterion`` (later 0.2.x sources); :func:`score_value` reads either. ``vote=None`` abstains.
    """

    weights: Weights
    vote_score: Score
    test_score: Score
    vote: Optional[bool] = None
    criterion: Optional[str] = None
    evaluation_results: Optional[Dict[str, Any]] = None


def score_value(score: Score, criterion: Optional[str] = None) -> float:
    """Return the float behind a 0.2.x score, which is a float or a dict keyed by ``criterion``."""
    if isinstance(score, dict):
        if criterion is not None and criterion in score:
            return float(score[criterion])
        if len(score) == 1:
            return float(next(iter(score.values())))
        raise ValueError(f"score dict {sorted(score)} has no entry for criterion {criterion!r}")
    return float(score)


class ModelFormat(IntEnum):
    """How :class:`ColearnModel.model` is encoded. ``PICKLE_WEIGHTS_ONLY`` is kept for 0.2.x names only:
    colearn never produces or reads pickles."""

    PICKLE_WEIGHTS_ONLY = 1
    ONNX = 2
    WEIGHTS_ONLY = 3
    SKOPS = 4
    KERAS = 5
    PYTORCH_STATE_DICT = 6


class ColearnModel(_Model):
    """An exported model: its format and either the model itself or a file that holds it."""

    model_format: ModelFormat
    model_file: Optional[str] = None
    model: Optional[Any] = None


class PredictionRequest(_Model):
    name: str
    input_data: Any
    pred_dataloader_key: Optional[Any] = None


class Prediction(_Model):
    name: str
    prediction_data: Any


class OnnxUnavailableError(RuntimeError):
    """Raised when a model cannot be converted to ONNX here (converter missing or model unsupported)."""


def convert_model_to_onnx(model: Any) -> Any:
    """Convert a scikit-learn, PyTorch or Keras model to an ONNX ``ModelProto``.

    Needs the matching converter (``skl2onnx``, ``torch.onnx`` + ``onnx``, ``tf2onnx``); raises
    :class:`OnnxUnavailableError` naming what to install when it is missing.
    """
    module = type(model).__module__.split(".")[0]
    if module == "sklearn":
        try:
            from skl2onnx import to_onnx  # type: ignore[import-not-found]
        except ImportError as exc:
            raise OnnxUnavailableError(
                "converting a scikit-learn model to ONNX needs skl2onnx: pip install skl2onnx") from exc
        return to_onnx(model)
    if module in ("torch", "colearn_pytorch") or _is_torch_module(model):
        from colearn_pytorch.export import torch_model_to_onnx  # lazy: torch only when asked

        return torch_model_to_onnx(model)
    if module in ("keras", "tensorflow", "tf_keras"):
        from colearn_keras.export import keras_model_to_onnx  # lazy: tensorflow only when asked

        return keras_model_to_onnx(model)
    raise OnnxUnavailableError(f"cannot convert a {type(model).__qualname__} to ONNX")


def _is_torch_module(model: Any) -> bool:
    return any(cls.__module__.startswith("torch.nn") for cls in type(model).__mro__)


def deser_model(model: Any) -> Any:
    """Recover an ONNX ``ModelProto`` from its serialized bytes (needs the ``onnx`` package)."""
    try:
        import onnx  # type: ignore[import-not-found]
    except ImportError as exc:
        raise OnnxUnavailableError("reading an ONNX model needs onnx: pip install onnx") from exc
    return onnx.load_model_from_string(model)


class MachineLearningInterface(abc.ABC):
    """What a learner does in collective learning. Implement the four abstract methods.

    The protocol calls these and nothing else, so a learner may live in this process, in a worker
    process, on another machine or behind a ledger agent.
    """

    @abc.abstractmethod
    def mli_propose_weights(self) -> Weights:
        """Train and return new weights. The held model must not change."""

    @abc.abstractmethod
    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        """Score ``weights`` on the vote set and the test set and vote. The held model must not change."""

    @abc.abstractmethod
    def mli_accept_weights(self, weights: Weights) -> None:
        """Adopt ``weights`` as the held model (reuse the scores :meth:`mli_test_weights` computed)."""

    @abc.abstractmethod
    def mli_get_current_weights(self) -> Weights:
        """Return the weights of the held model."""

    def mli_get_current_model(self) -> ColearnModel:
        """Export the held model. By default: its current weights as typed data (``WEIGHTS_ONLY``).

        colearn 0.2.8's learners do not implement this method; they get this default.
        """
        return ColearnModel(model_format=ModelFormat.WEIGHTS_ONLY, model=self.mli_get_current_weights().weights)

    def mli_check_layout(self, weights: Any) -> None:
        """Refuse weights that cannot be this model's: raise ``WeightsMismatchError`` naming the difference.

        ``weights`` has the structure, dtypes and shapes a peer sent, but its arrays may be placeholders without
        data: a learner server asks on a stream's header, before reading the data. By default the layout must be
        that of :meth:`mli_get_current_weights`; learners whose shapes change from round to round (a forest
        that grows) override this.
        """
        from colearn.learner_utils import check_layout

        check_layout(weights, self.mli_get_current_weights().weights)

    def mli_make_prediction(self, request: PredictionRequest) -> Prediction:
        """Predict with the held model. Optional; learners that support it override this."""
        raise NotImplementedError(f"{type(self).__name__} does not implement mli_make_prediction")


_MODEL_CLASSES = {  # colearn 0.2.x's names; "scipy" held torch's Module there, and still does
    "model_classes_keras": ("tensorflow", lambda: __import__("tensorflow").keras.Model),
    "model_classes_scipy": ("torch", lambda: __import__("torch").nn.Module),
    "model_classes_sklearn": ("sklearn", lambda: __import__("sklearn.base").base.ClassifierMixin),
}


def __getattr__(name: str) -> Any:
    """0.2.x's ``model_classes_keras`` / ``_scipy`` / ``_sklearn``: tuples of the model base classes of the
    installed frameworks (empty when one is missing), built on first use so that ``import colearn`` imports
    neither TensorFlow nor PyTorch."""
    if name in _MODEL_CLASSES:
        import importlib.util

        package, load = _MODEL_CLASSES[name]
        classes = (load(),) if importlib.util.find_spec(package) is not None else ()
        globals()[name] = classes
        return classes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

