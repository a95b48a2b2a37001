"""Run the dashboard: uvicorn in a background thread, started and stopped by the caller.

>>> server = DashboardServer("colearn-out").start()     # doctest: +SKIP
>>> print(server.url); ...; server.stop()                # doctest: +SKIP

Binds 127.0.0.1 by default (port 0: any free port). Another address needs tokens (``token_file`` or
``$COLEARN_TOKEN``, as for ``colearn serve``); the safer way to reach the page from another machine is an SSH
tunnel to the loopback address (see docs/dashboard.md).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Union

DEFAULT_HOST = "127.0.0.1"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"port: cannot bind {host}:{port} ({exc.strerror})") from None
    return sock


def resolve_dashboard_tokens(host: str, token_file: Optional[Union[str, os.PathLike]] = None) -> List[str]:
    """The tokens the page will ask for: required off loopback (the mechanism of ``colearn serve``)."""
    from colearn.grpc.security import is_loopback, resolve_tokens

    tokens = resolve_tokens(token_file)
    if not tokens and not is_loopback(host):
        raise ValueError(f"host: {host} is not a loopback address, so the page needs a token: give --token-file "
                         f"or set $COLEARN_TOKEN (or reach 127.0.0.1 through an SSH tunnel)")
    return tokens


class Page:
    """What both ways of serving share: the address, and ``with`` starting and stopping it."""

    host: str
    port: Optional[int] = None

    @property
    def url(self) -> str:
        """The address to open (IPv6 hosts in brackets)."""
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> "Page":
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Page":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    return port


class DashboardServer(Page):
    """The page of an output folder, served from a background thread until :meth:`stop`.

    ``since_ns``: ignore files written before then (see :class:`~colearn.dashboard.source.FolderSource`).
    """

    def __init__(self, path: Union[str, Path], *, host: str = DEFAULT_HOST, port: int = 0,
                 token_file: Optional[Union[str, os.PathLike]] = None, poll_seconds: float = 0.25,
                 since_ns: Optional[int] = None):
        from colearn.grpc.security import is_loopback

        self._requested_port = check_port(port)
        self.path = Path(path)
        self.host = host
        self.tokens = resolve_dashboard_tokens(host, token_file)
        self.loopback = is_loopback(host)
        self.poll_seconds = poll_seconds
        self.since_ns = since_ns
        self._server: Optional[object] = None
        self.thread: Optional[threading.Thread] = None
        """The thread that serves (None until started and after stopping)."""
        self.hub: Optional[Any] = None
        """The :class:`~colearn.dashboard.app.Hub` (its ``listeners`` count the open pages)."""

    def start(self, timeout: float = 10.0) -> "DashboardServer":
        """Bind, serve in a thread and return once the server answers (``ValueError`` if it did not in time)."""
        import uvicorn

        from colearn.dashboard.app import create_app
        from colearn.dashboard.source import FolderSource

        app = create_app(FolderSource(self.path, since_ns=self.since_ns), tokens=self.tokens or None,
                         loopback_only=self.loopback, poll_seconds=self.poll_seconds)
        sock = _bind(self.host, self._requested_port)  # bound here, so the port is known now (asyncio owns it)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=1, ws="none")
        server = uvicorn.Server(config)
        self._server = server
        self.hub = app.hub  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="colearn-dashboard",
                                        daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ValueError(f"the dashboard did not start on {self.host}:{self.port} within {timeout:g} s")
            time.sleep(0.02)
        return self

    def settle(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until open pages were sent the files as they are now: before :meth:`stop` at a run's end."""
        hub = self.hub
        deadline = time.monotonic() + timeout
        while hub is not None and hub.listeners and hub.source.changed() and time.monotonic() < deadline:
            time.sleep(0.05)
        if hub is not None and hub.listeners:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))  # the woken streams send it

    def stop(self, timeout: float = 5.0) -> None:
        """Close the event streams and the server; wait (bounded) for the thread to end."""
        if self._server is not None:
            self.hub.closing = True
            self._server.should_exit = True  # type: ignore[attr-defined]
        if self.thread is not None:
            self.thread.join(timeout)
        self._server = self.thread = None

__all__ = ["DashboardServer", "DEFAULT_HOST", "Page", "check_port", "resolve_dashboard_tokens"]
