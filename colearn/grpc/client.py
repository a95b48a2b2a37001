"""RemoteLearner: a MachineLearningInterface whose learner lives behind a learner server.

Weights go out as chunk streams and come back validated (colearn.encoding: dtypes, shapes, checksum;
never pickle). A failed call raises :class:`RemoteLearnerError`, which says what happened (``kind``:
timeout, crashed = unreachable or disconnected, invalid = the server sent something malformed, error =
the server refused or the learner raised) and carries the gRPC status.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import grpc

from colearn.grpc import PROTOCOL_VERSION
from colearn.grpc.chunking import (DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BYTES, WireError, assemble, blob_messages,
                                   serialize_chunk, weights_messages)
from colearn.grpc import chunking
from colearn.grpc.malloc import tune_malloc
from colearn.grpc.messages import model_from_wire, verdict_from_json, weights_from_wire, weights_meta
from colearn.grpc.protos import learner_pb2 as pb
from colearn.grpc.security import ClientTLS, auth_metadata, is_loopback, split_address
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ProposedWeights, Weights

R = TypeVar("R")
SERVICE = "colearn.learner.v1.Learner"
_KINDS = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout", grpc.StatusCode.UNAVAILABLE: "crashed",
          grpc.StatusCode.CANCELLED: "crashed",
          grpc.StatusCode.INVALID_ARGUMENT: "refused"}  # the server refused the weights: a voter rejects them


class LearnerStub:
    """The learner service's methods on a channel. Chunk streams travel as bytes (colearn.grpc.chunking
    serializes and parses them without protobuf copies of the weights); the rest as protobuf messages."""

    def __init__(self, channel: grpc.Channel):
        def method(kind: Callable, name: str, request: Optional[type], reply: Optional[type]) -> Any:
            return kind(f"/{SERVICE}/{name}", request_serializer=request.SerializeToString if request else
                        serialize_chunk, response_deserializer=reply.FromString if reply else None)

        self.Info = method(channel.unary_unary, "Info", pb.CallRequest, pb.InfoReply)
        self.ProposeWeights = method(channel.unary_stream, "ProposeWeights", pb.CallRequest, None)
        self.TestWeights = method(channel.stream_unary, "TestWeights", None, pb.Verdict)
        self.AcceptWeights = method(channel.stream_unary, "AcceptWeights", None, pb.AcceptReply)
        self.GetCurrentWeights = method(channel.unary_stream, "GetCurrentWeights", pb.CallRequest, None)
        self.GetCurrentModel = method(channel.unary_stream, "GetCurrentModel", pb.CallRequest, None)


class RemoteLearnerError(RuntimeError):
    """A call to a remote learner failed; ``kind`` is timeout, crashed, invalid, refused or error."""

    def __init__(self, message: str, kind: str = "error", code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.kind, self.code = kind, code


class RemoteLearner(MachineLearningInterface):
    """The learner served at ``address`` (``host:port``), reached over TLS when ``tls`` is given.

    ``timeout`` bounds every call (seconds); ``propose_timeout`` (default ``timeout``) bounds training.
    Without TLS only loopback addresses are allowed, unless ``allow_insecure``.
    """

    def __init__(self, address: str, *, tls: Optional[ClientTLS] = None, token: Optional[str] = None,
                 timeout: Optional[float] = 60.0, propose_timeout: Optional[float] = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, max_bytes: int = DEFAULT_MAX_BYTES,
                 allow_insecure: bool = False):
        host, _ = split_address(address)
        if tls is None and not is_loopback(host) and not allow_insecure:
            raise ValueError(f"refusing to reach {address} without TLS: give tls=ClientTLS(ca_file=...) "
                             f"(or allow_insecure on a trusted network)")
        self.address, self.tls, self.token = address, tls, token
        self.timeout = timeout
        self.propose_timeout = propose_timeout if propose_timeout is not None else timeout
        self.chunk_size, self.max_bytes = chunk_size, max_bytes
        self._lock = threading.Lock()
        self._channel: Optional[grpc.Channel] = None
        tune_malloc()  # chunk messages reuse heap memory (colearn.grpc.malloc)
        self._stub: Optional[LearnerStub] = None

    # ---- connection ------------------------------------------------------------------------
    def _connect(self) -> "LearnerStub":
        with self._lock:
            if self._stub is None:
                options: List[Tuple[str, Any]] = [("grpc.initial_reconnect_backoff_ms", 200),
                                                  ("grpc.min_reconnect_backoff_ms", 200),
                                                  ("grpc.max_reconnect_backoff_ms", 2000), *chunking.TRANSPORT_OPTIONS]
                if self.tls is not None:
                    options += self.tls.channel_options()
                    self._channel = grpc.secure_channel(self.address, self.tls.credentials(), options=options)
                else:
                    self._channel = grpc.insecure_channel(self.address, options=options)
                self._stub = LearnerStub(self._channel)
            return self._stub

    def reconnect(self) -> None:
        """Drop the channel; the next call opens a fresh one (after the server restarted, say)."""
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

    def _invoke(self, what: str, action: Callable[["LearnerStub", Tuple], R]) -> R:
        stub = self._connect()
        try:
            return action(stub, auth_metadata(self.token))
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            kind = _KINDS.get(code, "error")
            raise RemoteLearnerError(f"{what} at {self.address}: {code.name if code else 'error'}: {details}",
                                     kind, code) from None
        except WireError as exc:
            raise RemoteLearnerError(f"{what} at {self.address}: invalid answer: {exc}", "invalid") from None

    def _request(self) -> pb.CallRequest:
        return pb.CallRequest(protocol_version=PROTOCOL_VERSION)

    def _upload(self, weights: Weights, blob: Optional[bytes]) -> Iterator[bytes]:
        """The upload stream: ``blob`` sliced, or the weights encoded (and hashed) while they are sent."""
        if blob is None:
            return weights_messages(weights.weights, weights_meta(weights), chunk_size=self.chunk_size)
        return blob_messages(blob, weights_meta(weights), chunk_size=self.chunk_size)

    # ---- version and health ------------------------------------------------------------------
    def info(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The server's protocol/encoding/colearn versions, learner description, health and size limit."""
        reply = self._invoke("info", lambda stub, md: stub.Info(self._request(), timeout=timeout or self.timeout,
                                                               metadata=md))
        return {"protocol_version": reply.protocol_version, "encoding_version": reply.encoding_version,
                "colearn_version": reply.colearn_version, "learner": reply.learner, "healthy": reply.healthy,
                "max_bytes": reply.max_bytes}

    # ---- the MLI ------------------------------------------------------------------------------
    def _download(self, stream: Any) -> Tuple[Any, Dict[str, Any]]:
        """Reassemble a response stream; on a refusal, cancel it so the server stops sending."""
        try:
            return assemble(stream, self.max_bytes)
        except WireError:
            stream.cancel()
            raise

    def mli_propose_weights(self) -> Weights:
        def call(stub: LearnerStub, md: Tuple) -> Weights:
            stream = stub.ProposeWeights(self._request(), timeout=self.propose_timeout, metadata=md)
            return weights_from_wire(*self._download(stream))
        return self._invoke("propose", call)

    def mli_test_weights(self, weights: Weights, *, blob: Optional[bytes] = None) -> ProposedWeights:
        """Have the remote learner score ``weights``; ``blob`` is their encoding if already made."""
        chunks = self._upload(weights, blob)
        reply = self._invoke("test", lambda stub, md: stub.TestWeights(chunks, timeout=self.timeout, metadata=md))
        try:
            return verdict_from_json(reply.verdict_json, weights)
        except WireError as exc:
            raise RemoteLearnerError(f"test at {self.address}: invalid answer: {exc}", "invalid") from None

    def mli_accept_weights(self, weights: Weights, *, blob: Optional[bytes] = None) -> None:
        """Have the remote learner adopt ``weights``; ``blob`` is their encoding if already made."""
        chunks = self._upload(weights, blob)
        self._invoke("accept", lambda stub, md: stub.AcceptWeights(chunks, timeout=self.timeout, metadata=md))

    def mli_get_current_weights(self) -> Weights:
        def call(stub: LearnerStub, md: Tuple) -> Weights:
            stream = stub.GetCurrentWeights(self._request(), timeout=self.timeout, metadata=md)
            return weights_from_wire(*self._download(stream))
        return self._invoke("current weights", call)

    def mli_get_current_model(self) -> ColearnModel:
        def call(stub: LearnerStub, md: Tuple) -> ColearnModel:
            stream = stub.GetCurrentModel(self._request(), timeout=self.timeout, metadata=md)
            return model_from_wire(*self._download(stream))
        return self._invoke("current model", call)

    def __repr__(self) -> str:
        return f"RemoteLearner({self.address!r}, tls={self.tls is not None})"
