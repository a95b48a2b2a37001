"""0.2.x's ``ExampleGRPCLearnerClient``: the MLI of a learner a :class:`GRPCServer` builds on request.

The MLI calls go through :class:`colearn.grpc.client.RemoteLearner` (typed, validated weights; never pickle);
``get_supported_system`` and ``setup_ml`` use the factory service. Differences from 0.2.x: weights come back
decoded (arrays, as the learner made them), not as opaque bytes; with ``enable_encryption`` the client trusts
``ca_file`` (the server's certificate or its CA) instead of whatever certificate the server presents; ``start``
retries ``retries`` times ``retry_interval`` seconds apart (0.2.x: 100 times, 5 s apart).
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional

import grpc

from colearn.grpc import chunking
from colearn.grpc.client import RemoteLearner, RemoteLearnerError
from colearn.grpc.security import ClientTLS, auth_metadata
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ProposedWeights, Weights
from colearn_grpc.grpc_learner_server import FACTORY_SERVICE, MAX_REQUEST_BYTES
from colearn_grpc.logging import get_logger

_logger = get_logger(__name__)


class GRPCClientException(Exception):
    """The client could not reach the server."""


def _parse_reply(data: bytes) -> Any:
    if len(data) > 16 * MAX_REQUEST_BYTES:
        raise ValueError(f"factory reply of {len(data)} bytes is too large")
    return json.loads(data)


class ExampleGRPCLearnerClient(MachineLearningInterface):
    """The client half: asks the server what it can build, has it build a learner, then is that learner's MLI."""

    def __init__(self, name: str, address: str, enable_encryption: bool = False, *, ca_file: Optional[str] = None,
                 token: Optional[str] = None, timeout: Optional[float] = 60.0,
                 propose_timeout: Optional[float] = None):
        if enable_encryption and ca_file is None:
            raise ValueError("ca_file: give the server's certificate (or its CA) to use encryption; 0.2.x trusted "
                             "whatever certificate the server sent, which lets anyone in between read the weights")
        self.name, self.address = name, address
        self.tls = ClientTLS(ca_file=ca_file) if enable_encryption else None
        self.token, self.timeout = token, timeout
        self.remote = RemoteLearner(address, tls=self.tls, token=token, timeout=timeout,
                                    propose_timeout=propose_timeout)
        self.channel: Optional[grpc.Channel] = None

    # ---- connection -------------------------------------------------------------------------------------
    def _factory_call(self, method: str, request: Dict[str, Any]) -> Any:
        if self.channel is None:
            options = [*chunking.TRANSPORT_OPTIONS, *(self.tls.channel_options() if self.tls else [])]
            self.channel = (grpc.secure_channel(self.address, self.tls.credentials(), options=options)
                            if self.tls else grpc.insecure_channel(self.address, options=options))
        call = self.channel.unary_unary(f"/{FACTORY_SERVICE}/{method}", request_serializer=None,
                                        response_deserializer=_parse_reply)
        return call(json.dumps(request).encode(), timeout=self.timeout, metadata=auth_metadata(self.token))

    def start(self, retries: int = 10, retry_interval: float = 0.5) -> None:
        """Connect, retrying while the server is not up yet; raises :class:`GRPCClientException` if it never is."""
        caught: Optional[Exception] = None
        for attempt in range(max(1, retries)):
            try:
                self.get_version()
                _logger.info(f"Successfully connected to {self.address}!")
                return
            except (grpc.RpcError, ValueError) as exc:
                caught = exc
                _logger.warning(f"attempt {attempt} to connect to {self.address} failed")
                time.sleep(retry_interval)
        raise GRPCClientException(f"Failed to connect to {self.address}: {caught}")

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = None
        self.remote.close()

    # ---- the factory --------------------------------------------------------------------------------------
    def get_version(self) -> str:
        return str(self._factory_call("QueryVersion", {})["version"])

    def get_supported_system(self) -> Dict[str, Dict[str, Any]]:
        """``{"data_loaders": {name: default params JSON}, "model_architectures": {...}, "compatibilities":
        {model: [data loaders]}}``, as 0.2.x returned it."""
        reply = self._factory_call("QuerySupportedSystem", {})
        return {"data_loaders": dict(reply["data_loaders"]), "model_architectures": dict(reply["model_architectures"]),
                "compatibilities": dict(reply["compatibilities"])}

    def setup_ml(self, dataset_loader_name: str, dataset_loader_parameters: str, model_arch_name: str,
                 model_parameters: str, prediction_dataset_loader_name: Optional[str] = None,
                 prediction_dataset_loader_parameters: Optional[str] = None) -> bool:
        """Have the server build the learner; True on success (on failure the reason is logged and kept in
        ``last_error``)."""
        request = {"dataset_loader_name": dataset_loader_name, "dataset_loader_parameters": dataset_loader_parameters,
                   "model_arch_name": model_arch_name, "model_parameters": model_parameters}
        if prediction_dataset_loader_name:
            request.update(prediction_dataset_loader_name=prediction_dataset_loader_name,
                           prediction_dataset_loader_parameters=prediction_dataset_loader_parameters)
        self.last_error: Optional[str] = None
        try:
            return self._factory_call("MLSetup", request).get("status") == "SUCCESS"
        except grpc.RpcError as exc:
            self.last_error = f"{exc.code().name}: {exc.details()}"
            _logger.error(f"Failed to setup MLModel: {self.last_error}")
            return False

    # ---- the MLI ------------------------------------------------------------------------------------------
    def _mli(self, what: str, call: Any) -> Any:
        try:
            return call()
        except RemoteLearnerError as exc:
            raise ConnectionError(f"GRPC error: {what}: {exc}") from exc

    def mli_propose_weights(self) -> Weights:
        return self._mli("propose", self.remote.mli_propose_weights)

    def mli_test_weights(self, weights: Optional[Weights] = None) -> ProposedWeights:
        if weights is None:
            raise ValueError("weights: mli_test_weights(None) is not supported")
        return self._mli("test", lambda: self.remote.mli_test_weights(weights))

    def mli_accept_weights(self, weights: Weights) -> None:
        self._mli("accept", lambda: self.remote.mli_accept_weights(weights))

    def mli_get_current_weights(self) -> Weights:
        return self._mli("current weights", self.remote.mli_get_current_weights)

    def mli_get_current_model(self) -> ColearnModel:
        return self._mli("current model", self.remote.mli_get_current_model)
