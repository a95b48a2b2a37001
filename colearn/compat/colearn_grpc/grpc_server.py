"""0.2.x's ``GRPCServer``: runs a :class:`GRPCLearnerServer` for an :class:`MliFactory`.

Differences from 0.2.x, for safety: it listens on ``host`` (default 127.0.0.1, not 0.0.0.0); off loopback it
needs TLS (``enable_encryption`` with ``server_crt``/``server_key``) and ``tokens`` (or ``client_ca``), unless
``allow_insecure`` / ``allow_unauthenticated`` say otherwise; ``port=None`` or 0 picks a free port (``self.port``
tells which). ``run(wait_for_termination=True)`` blocks as 0.2.x's ``run()`` did. ``limits`` bounds what peers
may spend (:class:`colearn.grpc.limits.ServerLimits`); ``max_workers`` below the threads those limits need is
raised to that number.
"""
from __future__ import annotations

import dataclasses
from concurrent import futures
from typing import List, Optional, Sequence

import grpc

from colearn.grpc import chunking
from colearn.grpc.limits import ServerLimits, check_port
from colearn.grpc.server import start_bound
from colearn.grpc.security import ServerTLS, TokenAuthInterceptor, is_loopback
from colearn_grpc.grpc_learner_server import GRPCLearnerServer
from colearn_grpc.logging import get_logger
from colearn_grpc.mli_factory_interface import MliFactory

_logger = get_logger(__name__)


class GRPCServer:
    """A gRPC server for the learners ``mli_factory`` builds (0.2.x's constructor, plus keyword-only security)."""

    def __init__(self, mli_factory: MliFactory, port: Optional[int] = None, max_workers: int = 5,
                 enable_encryption: bool = False, server_key: str = "", server_crt: str = "", *,
                 host: str = "127.0.0.1", tokens: Sequence[str] = (), client_ca: Optional[str] = None,
                 allow_insecure: bool = False, allow_unauthenticated: bool = False,
                 limits: Optional[ServerLimits] = None):
        self.port = check_port(port or 0)
        self.host = host
        limits = limits or ServerLimits()
        if max_workers > limits.workers:
            limits = dataclasses.replace(limits, workers=max_workers)
        self.limits, self.max_workers = limits, limits.workers
        self.tls = (ServerTLS(cert_file=server_crt or "server.crt", key_file=server_key or "server.key",
                              client_ca_file=client_ca) if enable_encryption else None)
        self.tokens = list(tokens)
        if not is_loopback(host):
            if self.tls is None and not allow_insecure:
                raise ValueError(f"host={host!r} is not loopback: serve it with enable_encryption=True (server_crt, "
                                 f"server_key) or pass allow_insecure=True")
            if not self.tokens and client_ca is None and not allow_unauthenticated:
                raise ValueError(f"host={host!r} is not loopback: give tokens (or client_ca for mutual TLS) or pass "
                                 f"allow_unauthenticated=True")
        self.service = GRPCLearnerServer(mli_factory, limits=limits)
        self.server: Optional[grpc.Server] = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    def run(self, wait_for_termination: bool = True) -> None:
        """Start serving; block until stopped when ``wait_for_termination`` (0.2.x's behaviour)."""
        if self.server is not None:
            raise ValueError("re-running grpc")
        interceptors: List[grpc.ServerInterceptor] = [TokenAuthInterceptor(self.tokens)] if self.tokens else []
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                        thread_name_prefix="GRPCLearnerServer-poolworker-"),
                             interceptors=interceptors,
                             options=[("grpc.so_reuseport", 0), *chunking.TRANSPORT_OPTIONS])
        self.service.add_to_server(server)
        self.server, self.port = server, start_bound(server, self.host, self.port, self.tls)
        _logger.info(f"GRPC server started on {self.address} ({'TLS' if self.tls else 'no TLS'})")
        if wait_for_termination:
            server.wait_for_termination()

    def stop(self) -> None:
        """Stop serving (in-flight calls get 2 seconds), as 0.2.x did."""
        if self.server is not None:
            self.server.stop(2).wait()
            self.service.close()
        self.server = None
        _logger.info("server stopped")
