"""0.2.x's ``GRPCLearnerServer``: the learner an :class:`MliFactory` builds on request, served over gRPC.

Two services share one server: the factory service (``colearn_grpc.v1.Factory``: ``QueryVersion``,
``QuerySupportedSystem``, ``MLSetup``; small JSON messages, validated) and colearn's learner service
(:class:`colearn.grpc.server.LearnerServicer`) over the learner ``MLSetup`` built. Weights therefore travel in
colearn's typed chunk format and are checked against the learner's model before it sees them; until a learner
is set up, its calls fail with FAILED_PRECONDITION.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, Optional

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from colearn.grpc.chunking import WireError
from colearn.grpc.limits import ServerLimits
from colearn.grpc.server import LearnerServicer, add_servicer
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ProposedWeights, Weights
from colearn_grpc.logging import get_logger
from colearn_grpc.mli_factory_interface import MliFactory

_logger = get_logger(__name__)
FACTORY_SERVICE = "colearn_grpc.v1.Factory"
MAX_REQUEST_BYTES = 1 << 20  # factory requests are names and JSON parameters


class MLSetupRequest(BaseModel):
    """What ``MLSetup`` receives (0.2.x's ``RequestMLSetup`` fields); parameters are JSON object text."""

    model_config = ConfigDict(extra="forbid")
    dataset_loader_name: str = Field(max_length=256)
    dataset_loader_parameters: str = Field(default="{}", max_length=MAX_REQUEST_BYTES)
    model_arch_name: str = Field(max_length=256)
    model_parameters: str = Field(default="{}", max_length=MAX_REQUEST_BYTES)
    prediction_dataset_loader_name: Optional[str] = Field(default=None, max_length=256)
    prediction_dataset_loader_parameters: Optional[str] = Field(default=None, max_length=MAX_REQUEST_BYTES)


def _encode(message: Dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


class _SetUpLearner(MachineLearningInterface):
    """The MLI the learner service serves: the learner ``MLSetup`` built last (refused until there is one)."""

    def __init__(self) -> None:
        self.learner: Optional[MachineLearningInterface] = None

    def _current(self) -> MachineLearningInterface:
        learner = self.learner
        if learner is None:
            raise WireError("model not set up: call MLSetup (setup_ml) first", "FAILED_PRECONDITION")
        return learner

    def mli_propose_weights(self) -> Weights:
        return self._current().mli_propose_weights()

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        return self._current().mli_test_weights(weights)

    def mli_accept_weights(self, weights: Weights) -> None:
        self._current().mli_accept_weights(weights)

    def mli_get_current_weights(self) -> Weights:
        return self._current().mli_get_current_weights()

    def mli_get_current_model(self) -> ColearnModel:
        return self._current().mli_get_current_model()

    def mli_check_layout(self, weights: Any) -> None:
        self._current().mli_check_layout(weights)


class GRPCLearnerServer:
    """Serves the factory and the learner it builds. ``learner`` is the learner set up last (or None).

    ``limits`` bounds what peers may spend on the learner service (:class:`colearn.grpc.limits.ServerLimits`).
    """

    def __init__(self, mli_factory: MliFactory, *, limits: Optional[ServerLimits] = None):
        if not isinstance(mli_factory, MliFactory):
            raise TypeError(f"mli_factory must be an MliFactory, got {type(mli_factory).__name__}")
        self.mli_factory = mli_factory
        self._setup_lock = threading.Lock()
        self._served = _SetUpLearner()
        self.learner_servicer = LearnerServicer(self._served, description=f"{type(mli_factory).__name__} learner",
                                                limits=limits)

    @property
    def learner(self) -> Optional[MachineLearningInterface]:
        return self._served.learner

    # ---- the factory service ------------------------------------------------------------------------
    def QueryVersion(self, request: bytes, context: grpc.ServicerContext) -> Dict[str, Any]:  # noqa: N802
        return {"version": self.mli_factory.get_version()}

    def QuerySupportedSystem(self, request: bytes, context: grpc.ServicerContext) -> Dict[str, Any]:  # noqa: N802
        """Models and data loaders (name -> default parameters as JSON text) and which fit together."""
        try:
            factory = self.mli_factory
            return {"model_architectures": {n: json.dumps(p) for n, p in factory.get_models().items()},
                    "data_loaders": {n: json.dumps(p) for n, p in factory.get_dataloaders().items()},
                    "compatibilities": {n: sorted(d) for n, d in factory.get_compatibilities().items()}}
        except Exception as exc:  # the factory's fault: report it, keep serving
            _logger.exception("QuerySupportedSystem failed")
            context.abort(grpc.StatusCode.INTERNAL, f"factory raised {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def MLSetup(self, request: bytes, context: grpc.ServicerContext) -> Dict[str, Any]:  # noqa: N802
        """Build the learner named by the request; it replaces the previous one only when building succeeds."""
        try:
            setup = MLSetupRequest.model_validate_json(request)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"MLSetup: {where}: {first['msg']}")
        if setup.prediction_dataset_loader_name:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "prediction data loaders are not supported")
        with self._setup_lock:
            try:
                learner = self.mli_factory.get_mli(model_name=setup.model_arch_name,
                                                   model_params=setup.model_parameters,
                                                   dataloader_name=setup.dataset_loader_name,
                                                   dataset_params=setup.dataset_loader_parameters)
            except Exception as exc:  # bad names or parameters, missing data: the caller's to fix
                _logger.warning(f"MLSetup failed: {type(exc).__name__}: {exc}")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"get_mli raised {type(exc).__name__}: {exc}")
            if not isinstance(learner, MachineLearningInterface):
                context.abort(grpc.StatusCode.INTERNAL, f"get_mli returned a {type(learner).__name__}, not an MLI")
            self._served.learner = learner
        _logger.info(f"learner set up: {setup.model_arch_name} on {setup.dataset_loader_name}")
        return {"status": "SUCCESS"}

    # ---- wiring ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the learner service's stream watchdog (after the gRPC server stopped)."""
        self.learner_servicer.guard.close()

    def add_to_server(self, server: grpc.Server) -> None:
        """Register the factory service and colearn's learner service on ``server``."""
        def unary(method: Callable[[bytes, grpc.ServicerContext], Dict[str, Any]]) -> grpc.RpcMethodHandler:
            def bounded(request: bytes, context: grpc.ServicerContext) -> Dict[str, Any]:
                if len(request) > MAX_REQUEST_BYTES:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"request of {len(request)} bytes is over {MAX_REQUEST_BYTES}")
                return method(request, context)
            return grpc.unary_unary_rpc_method_handler(bounded, request_deserializer=None,
                                                       response_serializer=_encode)

        handlers = {name: unary(getattr(self, name)) for name in ("QueryVersion", "QuerySupportedSystem", "MLSetup")}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(FACTORY_SERVICE, handlers),))
        add_servicer(self.learner_servicer, server)
