"""The learner server: serves one learner's MLI calls (propose, test, accept, current weights/model, info).

Everything a peer sends is untrusted: a chunk stream is reassembled under a size limit, decoded with
colearn.encoding (dtype, shape, checksum; never pickle) and checked against the layout of the
learner's model before the learner sees it. Each refusal is a clear gRPC status and leaves the model
unchanged. MLI calls are serialised (one at a time), since learners are not thread-safe. What peers may
spend (sizes, concurrent streams, time per stream, threads) is bounded by :class:`ServerLimits` (see
:mod:`colearn.grpc.limits`). Each server instance has a random ``instance_id`` (in ``Info``); a call that
expects another instance (the server restarted since the caller last looked) is refused before the learner
sees it, so a driver never mistakes a rebuilt learner for the one it trained.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, TypeVar

import grpc

from colearn.encoding import FORMAT_VERSION, WeightsEncodeError
from colearn.grpc import INSTANCE_HEADER, PROTOCOL_VERSION, RESTARTED, chunking
from colearn.grpc.chunking import (DEFAULT_CHUNK_SIZE, ChunkAssembler, WireError, check_chunk_size,
                                   check_protocol_version, serialize_chunk, weights_messages)
from colearn.grpc.limits import ServerLimits, StreamGuard, check_port
from colearn.grpc.malloc import tune_malloc
from colearn.grpc.messages import (model_meta, model_payload, verdict_json, weights_from_wire,
                                   weights_meta)
from colearn.grpc.protos import learner_pb2 as pb
from colearn.grpc.protos import learner_pb2_grpc as pb_grpc
from colearn.grpc.security import ServerTLS, TokenAuthInterceptor, is_loopback
from colearn.learner_utils import WeightsMismatchError, check_layout, layout_of
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights

log = logging.getLogger(__name__)
R = TypeVar("R")
SERVICE = "colearn.learner.v1.Learner"


def _colearn_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("colearn")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        return "unknown"


class LearnerServicer(pb_grpc.LearnerServicer):
    """Adapts an MLI to the learner service, validating everything that arrives."""

    def __init__(self, mli: MachineLearningInterface, *, description: str = "", limits: Optional[ServerLimits] = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, check_layout: bool = True):
        self.mli = mli
        self.description = description or type(mli).__name__
        self.limits = limits or ServerLimits()
        self.max_bytes = self.limits.max_bytes
        self.guard = StreamGuard(self.limits)
        self.instance_id = secrets.token_hex(16)
        self.chunk_size = check_chunk_size(chunk_size)
        self.check_layout = check_layout
        self._lock = threading.Lock()
        self._layout: Any = None  # placeholders of the current weights' layout, once fetched

    # ---- helpers ---------------------------------------------------------------------------
    def _call(self, context: grpc.ServicerContext, action: Callable[[], R]) -> R:
        """Run an MLI call under the lock, turning the learner's exceptions into statuses."""
        with self._lock:
            try:
                return action()
            except WeightsMismatchError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"weights do not fit the model: {exc}")
            except WireError as exc:
                context.abort(getattr(grpc.StatusCode, exc.status), str(exc))
            except Exception as exc:  # the learner's own fault: report it, keep serving
                log.exception("learner raised")
                context.abort(grpc.StatusCode.INTERNAL, f"learner raised {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _receive(self, chunks: Iterable[bytes], context: grpc.ServicerContext, what: str) -> Weights:
        """Reassemble and decode an uploaded stream under the watchdog; weights that do not fit the model's
        layout are refused from their header, before their data is read."""
        limits = self.limits
        try:
            with self.guard.watch(context, what) as watch:
                assembler = ChunkAssembler(self.max_bytes, self._check_layout if self.check_layout else None,
                                           max_header_bytes=limits.max_header_bytes, max_arrays=limits.max_arrays)
                for chunk in chunks:  # waiting here is the peer's time; handling the chunk is ours
                    watch.working = True
                    assembler.add(chunk)
                    watch.touch()
            value = assembler.decode()
            assert assembler.metadata is not None
            return weights_from_wire(value, assembler.metadata)
        except WireError as exc:
            status, message = exc.status, str(exc)
        except WeightsMismatchError as exc:
            status, message = "INVALID_ARGUMENT", f"weights do not fit the model: {exc}"
        except grpc.RpcError:
            raise  # the stream was cancelled (by the peer or the watchdog): nothing to answer
        except Exception as exc:  # a malformed upload the checks above did not name: still a clear refusal
            log.warning("refused a malformed %s: %s: %s", what, type(exc).__name__, exc)
            status, message = "INVALID_ARGUMENT", f"malformed upload ({type(exc).__name__}: {exc})"
        context.abort(getattr(grpc.StatusCode, status), message)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_layout(self, received: Any) -> None:
        """Refuse weights (a placeholder with their structure, dtypes and shapes) that cannot be the model's.

        A learner that overrides ``mli_check_layout`` decides. Otherwise they must have the layout of the
        learner's current weights, which is remembered (as placeholders, no data) instead of fetched, i.e.
        copied, for every upload; it is fetched again before anything is refused, so a model whose layout
        changed is judged by its new one.
        """
        with self._lock:
            try:
                if _overrides_check_layout(self.mli):
                    self.mli.mli_check_layout(received)
                    return
                if self._layout is not None:
                    try:
                        check_layout(received, self._layout)
                        return
                    except WeightsMismatchError:
                        pass  # maybe the model changed: ask it again
                layout = self._layout = layout_of(self.mli.mli_get_current_weights().weights)
            except WeightsMismatchError:
                raise
            except Exception as exc:  # the learner's own fault
                log.exception("learner raised")
                raise WireError(f"learner raised {type(exc).__name__}: {exc}", "INTERNAL") from None
        check_layout(received, layout)

    def _version(self, request: pb.CallRequest, context: grpc.ServicerContext) -> None:
        try:
            check_protocol_version(request.protocol_version)
        except WireError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    def _expect_instance(self, context: grpc.ServicerContext) -> None:
        """Refuse a call that expects another instance of this server (one that ran before a restart)."""
        expected = [v for k, v in context.invocation_metadata() or () if k == INSTANCE_HEADER]
        if expected and expected[0] != self.instance_id:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"{RESTARTED}: this is instance {self.instance_id}, the caller expected {expected[0]!s:.40} "
                          f"(its learner was rebuilt and does not hold what the caller gave it)")

    @contextmanager
    def _slot(self, kind: str, context: grpc.ServicerContext, request: Any = None) -> Iterator[None]:
        """Hold an upload or download slot for the whole call (after the version and instance checks)."""
        if request is not None:
            self._version(request, context)
        self._expect_instance(context)
        try:
            self.guard.acquire(kind)
        except WireError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            yield
        finally:
            self.guard.release(kind)

    def _send(self, value: Any, metadata: dict, context: grpc.ServicerContext, what: str) -> Iterator[bytes]:
        """Stream ``value`` to the caller under the watchdog (a reader that stalls is cancelled)."""
        messages = self._stream(value, metadata, context)
        with self.guard.watch(context, what) as watch:
            for message in messages:
                yield message
                watch.touch()

    def _stream(self, value: Any, metadata: dict, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Encode while sending: the arrays are hashed and copied chunk by chunk, never as a whole."""
        try:
            return weights_messages(value, metadata, chunk_size=self.chunk_size)
        except WeightsEncodeError as exc:
            context.abort(grpc.StatusCode.INTERNAL, f"learner's weights cannot be encoded: {exc}")
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the service ---------------------------------------------------------------------
    def Info(self, request: pb.CallRequest, context: grpc.ServicerContext) -> pb.InfoReply:  # noqa: N802
        return pb.InfoReply(protocol_version=PROTOCOL_VERSION, encoding_version=FORMAT_VERSION,
                            colearn_version=_colearn_version(), learner=self.description, healthy=True,
                            max_bytes=self.max_bytes, instance_id=self.instance_id)

    def ProposeWeights(self, request: pb.CallRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        with self._slot("download", context, request):
            weights = self._call(context, self.mli.mli_propose_weights)
            if not isinstance(weights, Weights):
                context.abort(grpc.StatusCode.INTERNAL, f"learner proposed a {type(weights).__name__}, not Weights")
            yield from self._send(weights.weights, weights_meta(weights), context, "proposal download")

    def TestWeights(self, request_iterator: Iterable[bytes], context: grpc.ServicerContext) -> pb.Verdict:  # noqa: N802
        with self._slot("upload", context):
            weights = self._receive(request_iterator, context, "test upload")
            verdict = self._call(context, lambda: self.mli.mli_test_weights(weights))
        if not isinstance(verdict, ProposedWeights):
            context.abort(grpc.StatusCode.INTERNAL, f"learner answered a {type(verdict).__name__}, "
                                                    f"not ProposedWeights")
        return pb.Verdict(verdict_json=verdict_json(verdict))

    def AcceptWeights(self, request_iterator: Iterable[bytes], context: grpc.ServicerContext) -> pb.AcceptReply:  # noqa: N802
        with self._slot("upload", context):
            weights = self._receive(request_iterator, context, "accept upload")
            self._call(context, lambda: self.mli.mli_accept_weights(weights))
        return pb.AcceptReply()

    def GetCurrentWeights(self, request: pb.CallRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        with self._slot("download", context, request):
            weights = self._call(context, self.mli.mli_get_current_weights)
            yield from self._send(weights.weights, weights_meta(weights), context, "weights download")

    def GetCurrentModel(self, request: pb.CallRequest, context: grpc.ServicerContext) -> Iterator[bytes]:  # noqa: N802
        with self._slot("download", context, request):
            model = self._call(context, self.mli.mli_get_current_model)
            yield from self._send(model_payload(model), model_meta(model), context, "model download")


def _overrides_check_layout(mli: Any) -> bool:
    """Whether the learner judges layouts itself (rather than by its current weights' layout)."""
    own = getattr(type(mli), "mli_check_layout", None)
    return own is not None and own is not MachineLearningInterface.mli_check_layout


@dataclass
class LearnerServer:
    """A running learner server; ``port`` is the bound port (useful when asked for port 0)."""

    server: grpc.Server
    host: str
    port: int
    tls: bool
    authenticated: bool
    servicer: LearnerServicer
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self.server.wait_for_termination(timeout)

    @property
    def instance_id(self) -> str:
        return self.servicer.instance_id

    def stop(self, grace: Optional[float] = 1.0) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self.server.stop(grace).wait()
            self.servicer.guard.close()

    def __enter__(self) -> "LearnerServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def add_servicer(servicer: LearnerServicer, server: grpc.Server) -> None:
    """Register the learner service; chunk streams use :mod:`colearn.grpc.chunking`'s (de)serializers (no
    protobuf copies of the weights), everything else the generated protobuf classes."""
    def handler(kind: Callable, method: Callable, request: Optional[type], reply: Optional[type]) -> Any:
        return kind(method, request_deserializer=request.FromString if request else None,
                    response_serializer=reply.SerializeToString if reply else serialize_chunk)

    handlers = {
        "Info": handler(grpc.unary_unary_rpc_method_handler, servicer.Info, pb.CallRequest, pb.InfoReply),
        "ProposeWeights": handler(grpc.unary_stream_rpc_method_handler, servicer.ProposeWeights, pb.CallRequest,
                                  None),
        "TestWeights": handler(grpc.stream_unary_rpc_method_handler, servicer.TestWeights, None, pb.Verdict),
        "AcceptWeights": handler(grpc.stream_unary_rpc_method_handler, servicer.AcceptWeights, None,
                                 pb.AcceptReply),
        "GetCurrentWeights": handler(grpc.unary_stream_rpc_method_handler, servicer.GetCurrentWeights,
                                     pb.CallRequest, None),
        "GetCurrentModel": handler(grpc.unary_stream_rpc_method_handler, servicer.GetCurrentModel, pb.CallRequest,
                                   None),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if hasattr(server, "add_registered_method_handlers"):  # grpcio >= 1.63: a faster lookup
        server.add_registered_method_handlers(SERVICE, handlers)


def serve(mli: MachineLearningInterface, host: str = "127.0.0.1", port: int = 0, *,
          tls: Optional[ServerTLS] = None, tokens: Sequence[str] = (), allow_insecure: bool = False,
          allow_unauthenticated: bool = False, max_bytes: Optional[int] = None,
          chunk_size: int = DEFAULT_CHUNK_SIZE, check_layout: bool = True, description: str = "",
          max_workers: Optional[int] = None, limits: Optional[ServerLimits] = None) -> LearnerServer:
    """Start serving ``mli`` on ``host:port`` and return the running :class:`LearnerServer`.

    Off loopback, TLS is required (``allow_insecure`` overrides) and so is a token or client certificates
    (``allow_unauthenticated`` overrides). ``limits`` bounds what peers may spend (:class:`ServerLimits`);
    ``max_bytes`` and ``max_workers``, if given, set its ``max_bytes`` and ``workers``. A nonsensical port or
    limit raises :class:`~colearn.grpc.limits.LimitError` (a ValueError naming the parameter) before binding.
    """
    check_port(port)
    given = {k: v for k, v in {"max_bytes": max_bytes, "workers": max_workers}.items() if v is not None}
    limits = dataclasses.replace(limits, **given) if limits is not None else ServerLimits(**given)
    if not is_loopback(host):
        if tls is None and not allow_insecure:
            raise ValueError(f"refusing to serve on non-loopback address {host!r} without TLS: give a certificate "
                             f"and key (see `colearn make-cert`) or allow_insecure")
        if not tokens and (tls is None or tls.client_ca_file is None) and not allow_unauthenticated:
            raise ValueError(f"refusing to serve on non-loopback address {host!r} without authentication: give "
                             f"tokens or a client CA (mutual TLS), or allow_unauthenticated")
    servicer = LearnerServicer(mli, description=description, limits=limits, chunk_size=chunk_size,
                               check_layout=check_layout)
    interceptors: List[grpc.ServerInterceptor] = [TokenAuthInterceptor(tokens)] if tokens else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="colearn-serve"),
                         interceptors=interceptors, options=[("grpc.so_reuseport", 0), *chunking.TRANSPORT_OPTIONS])
    add_servicer(servicer, server)
    bound = start_bound(server, host, port, tls)
    return LearnerServer(server, host, bound, tls is not None, bool(tokens), servicer)


def start_bound(server: grpc.Server, host: str, port: int, tls: Optional[Any]) -> int:
    """Bind ``server`` to ``host:port`` (TLS when ``tls`` is given) and start it; return the bound port.

    Raises ``OSError`` naming the address when it cannot be bound."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_secure_port(bind, tls.credentials()) if tls else server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise OSError(f"cannot bind {bind}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot bind {bind} (address in use or not available)")
    tune_malloc()
    server.start()
    return bound
