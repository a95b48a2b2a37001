"""RemoteLearner: a MachineLearningInterface whose learner lives behind a learner server.

Weights go out as chunk streams and come back validated (colearn.encoding: dtypes, shapes, checksum;
never pickle). A failed call raises :class:`RemoteLearnerError`, which says what happened (``kind``:
timeout, crashed = unreachable or disconnected, invalid = the server sent something malformed, error =
the server refused or the learner raised) and carries the gRPC status. A server that is busy (all its
stream slots taken) is asked again, with backoff, until the call's timeout. Once :meth:`RemoteLearner.pin_instance`
has been called, every call names the server instance it expects, and a restarted server answers
:class:`ServerRestartedError` instead of serving a learner that lost its state.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import grpc

from colearn.grpc import INSTANCE_HEADER, PROTOCOL_VERSION, RESTARTED
from colearn.grpc.chunking import (DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BYTES, WireError, assemble, blob_messages,
                                   serialize_chunk, weights_messages)
from colearn.grpc import chunking
from colearn.grpc.limits import BUSY
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


class ServerRestartedError(RemoteLearnerError):
    """The server is not the instance this client pinned: it restarted, and its learner was rebuilt."""


def _busy(exc: grpc.RpcError) -> bool:
    return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and (exc.details() or "").startswith(BUSY)


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
        self.instance_id: Optional[str] = None  # the server instance calls expect, once pinned (pin_instance)

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

    def _invoke(self, what: str, action: Callable[["LearnerStub", Tuple, Optional[float]], R],
                timeout: Optional[float]) -> R:
        """Run ``action(stub, metadata, timeout)``; a busy server is asked again (backoff) until ``timeout``."""
        stub = self._connect()
        metadata = auth_metadata(self.token) + (((INSTANCE_HEADER, self.instance_id),) if self.instance_id else ())
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.05
        while True:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            try:
                return action(stub, metadata, remaining)
            except grpc.RpcError as exc:
                if _busy(exc) and (deadline is None or time.monotonic() + pause < deadline):
                    time.sleep(pause)
                    pause = min(2 * pause, 1.0)
                    continue
                raise self._error(what, exc) from None
            except WireError as exc:
                raise RemoteLearnerError(f"{what} at {self.address}: invalid answer: {exc}", "invalid") from None

    def _error(self, what: str, exc: grpc.RpcError) -> RemoteLearnerError:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        message = f"{what} at {self.address}: {code.name if code else 'error'}: {details}"
        if code == grpc.StatusCode.FAILED_PRECONDITION and (details or "").startswith(RESTARTED):
            return ServerRestartedError(message, "crashed", code)
        return RemoteLearnerError(message, _KINDS.get(code, "error"), code)

    def _request(self) -> pb.CallRequest:
        return pb.CallRequest(protocol_version=PROTOCOL_VERSION)

    def _upload(self, weights: Weights, blob: Optional[bytes]) -> Iterator[bytes]:
        """The upload stream: ``blob`` sliced, or the weights encoded (and hashed) while they are sent."""
        if blob is None:
            return weights_messages(weights.weights, weights_meta(weights), chunk_size=self.chunk_size)
        return blob_messages(blob, weights_meta(weights), chunk_size=self.chunk_size)

    # ---- version and health ------------------------------------------------------------------
    def info(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The server's protocol/encoding/colearn versions, learner description, health, size limit and
        instance id (new each time the server starts)."""
        reply = self._invoke("info", lambda stub, md, left: stub.Info(self._request(), timeout=left, metadata=md),
                             timeout or self.timeout)
        return {"protocol_version": reply.protocol_version, "encoding_version": reply.encoding_version,
                "colearn_version": reply.colearn_version, "learner": reply.learner, "healthy": reply.healthy,
                "max_bytes": reply.max_bytes, "instance_id": reply.instance_id}

    def pin_instance(self) -> str:
        """Expect, from now on, the server instance that answers now: every later call names it, and a
        restarted server refuses the call (:class:`ServerRestartedError`). Returns the instance id."""
        self.instance_id = None
        self.instance_id = self.info()["instance_id"]  # "" from an older server: nothing to check
        return self.instance_id

    # ---- the MLI ------------------------------------------------------------------------------
    def _download(self, stream: Any) -> Tuple[Any, Dict[str, Any]]:
        """Reassemble a response stream; on a refusal, cancel it so the server stops sending."""
        try:
            return assemble(stream, self.max_bytes)
        except WireError:
            stream.cancel()
            raise

    def mli_propose_weights(self) -> Weights:
        def call(stub: LearnerStub, md: Tuple, left: Optional[float]) -> Weights:
            return weights_from_wire(*self._download(stub.ProposeWeights(self._request(), timeout=left, metadata=md)))
        return self._invoke("propose", call, self.propose_timeout)

    def mli_test_weights(self, weights: Weights, *, blob: Optional[bytes] = None) -> ProposedWeights:
        """Have the remote learner score ``weights``; ``blob`` is their encoding if already made."""
        self._upload(weights, blob)  # encoding errors raise here, before anything is sent
        reply = self._invoke("test", lambda stub, md, left: stub.TestWeights(self._upload(weights, blob), timeout=left,
                                                                             metadata=md), self.timeout)
        try:
            return verdict_from_json(reply.verdict_json, weights)
        except WireError as exc:
            raise RemoteLearnerError(f"test at {self.address}: invalid answer: {exc}", "invalid") from None

    def mli_accept_weights(self, weights: Weights, *, blob: Optional[bytes] = None) -> None:
        """Have the remote learner adopt ``weights``; ``blob`` is their encoding if already made."""
        self._upload(weights, blob)
        self._invoke("accept", lambda stub, md, left: stub.AcceptWeights(self._upload(weights, blob), timeout=left,
                                                                         metadata=md), self.timeout)

    def mli_get_current_weights(self) -> Weights:
        def call(stub: LearnerStub, md: Tuple, left: Optional[float]) -> Weights:
            return weights_from_wire(*self._download(stub.GetCurrentWeights(self._request(), timeout=left,
                                                                            metadata=md)))
        return self._invoke("current weights", call, self.timeout)

    def mli_get_current_model(self) -> ColearnModel:
        def call(stub: LearnerStub, md: Tuple, left: Optional[float]) -> ColearnModel:
            return model_from_wire(*self._download(stub.GetCurrentModel(self._request(), timeout=left, metadata=md)))
        return self._invoke("current model", call, self.timeout)

    def __repr__(self) -> str:
        return f"RemoteLearner({self.address!r}, tls={self.tls is not None})"
