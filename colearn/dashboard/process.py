"""The page served from a child process, so that it never competes with the experiment for the interpreter.

A server thread in the experiment's process shares its GIL: each time the thread wakes up (uvicorn ticks ten times
a second) the experiment's thread hands the GIL over and waits to get it back; and a page that fails or hangs would
do so inside the run. ``colearn run --dashboard`` therefore serves the page from a child process (spawned, so
nothing of the parent's state is copied) that follows the output folder like ``colearn dashboard`` does.

>>> page = DashboardProcess("colearn-out").start()     # doctest: +SKIP
>>> print(page.url); ...; page.stop()                  # doctest: +SKIP
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queues
import signal
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from colearn.dashboard.server import DEFAULT_HOST, Page, check_port, resolve_dashboard_tokens


def _serve_until_stopped(path: str, options: Dict[str, Any], messages: Any, stop: Any, parent: int) -> None:
    """The child: serve, report the port, wait for ``stop`` (or the parent's end), let open pages catch up, stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run; the parent stops the page
    from colearn.dashboard.server import DashboardServer

    try:
        server = DashboardServer(path, **options).start()
    except (ValueError, OSError, ImportError) as exc:
        messages.put(("error", str(exc)))
        return
    messages.put(("started", server.port))
    cpu_started = time.process_time()
    while not stop.wait(0.2) and os.getppid() == parent:
        pass
    server.settle()
    server.stop()
    messages.put(("stopped", time.process_time() - cpu_started))


class DashboardProcess(Page):
    """The page of an output folder, served by a child process until :meth:`stop` (same options as
    :class:`~colearn.dashboard.server.DashboardServer`; errors in them are raised here, before the child starts)."""

    def __init__(self, path: Union[str, Path], *, host: str = DEFAULT_HOST, port: int = 0,
                 token_file: Optional[Union[str, os.PathLike]] = None, poll_seconds: float = 0.25,
                 since_ns: Optional[int] = None):
        check_port(port)
        self.tokens = resolve_dashboard_tokens(host, token_file)
        self.path, self.host = Path(path), host
        self._options = {"host": host, "port": port, "token_file": str(token_file) if token_file else None,
                         "poll_seconds": poll_seconds, "since_ns": since_ns}
        self.process: Optional[Any] = None
        self.page_cpu_seconds: Optional[float] = None
        """CPU time the child spent serving, known after :meth:`stop`."""

    def start(self, timeout: float = 60.0) -> "DashboardProcess":
        """Spawn the child and return once it serves (``ValueError`` with the child's reason if it did not)."""
        context = multiprocessing.get_context("spawn")
        self._messages, self._stop = context.Queue(), context.Event()
        self.process = context.Process(target=_serve_until_stopped, name="colearn-dashboard", daemon=True,
                                       args=(str(self.path), self._options, self._messages, self._stop, os.getpid()))
        self.process.start()
        try:
            kind, value = self._messages.get(timeout=timeout)
        except queues.Empty:
            kind, value = "error", f"the dashboard's process did not start within {timeout:g} s"
        if kind != "started":
            self._end()
            raise ValueError(value)
        self.port = value
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Let open pages get the folder as it is now, stop the child and wait for it (bounded)."""
        if self.process is None:
            return
        self._stop.set()
        try:
            kind, value = self._messages.get(timeout=timeout if self.process.is_alive() else 0.1)
            self.page_cpu_seconds = value if kind == "stopped" else None
        except queues.Empty:
            pass
        self._end(timeout)

    def _end(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the child to exit, terminate it if it does not."""
        assert self.process is not None
        self._stop.set()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        self.process = None


__all__ = ["DashboardProcess"]
