"""What a learner server spends on its peers: sizes, concurrent streams, time per stream, threads.

:class:`ServerLimits` holds every limit (validated: a nonsensical one is refused when the server is made,
naming the parameter). :class:`StreamGuard` enforces the stream limits: a stream first takes a slot
(uploads and downloads have their own; with none free the call is refused at once with RESOURCE_EXHAUSTED
"server busy", so that waiting callers never pile up on worker threads), and while it moves data a watchdog
thread cancels it if no chunk moves for ``idle_timeout`` seconds or it runs past ``stream_timeout``. The
server runs more worker threads than stream slots, so ``Info`` and the other calls always find one: a peer
that opens uploads and stalls (a slowloris) holds at most ``max_uploads`` threads, for ``idle_timeout``.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterator, Optional

from colearn.grpc.chunking import DEFAULT_MAX_ARRAYS, DEFAULT_MAX_BYTES, DEFAULT_MAX_HEADER_BYTES, WireError

log = logging.getLogger(__name__)
BUSY = "server busy"
"""How a refusal for want of a free stream slot starts (clients retry those until their timeout)."""
SPARE_WORKERS = 4
"""Worker threads beyond the stream slots by default, for Info and calls that are not streams."""


class LimitError(ValueError):
    """A limit that makes no sense; ``parameter`` names it (``max_bytes``, ``port``, ...)."""

    def __init__(self, parameter: str, requirement: str, value: Any):
        super().__init__(f"{parameter} must be {requirement}, got {value!r}")
        self.parameter, self.requirement, self.value = parameter, requirement, value


def check_port(port: Any) -> int:
    """A TCP port to bind: 0 (any free port) to 65535."""
    if type(port) is not int or not 0 <= port <= 65535:
        raise LimitError("port", "an integer from 0 (any free port) to 65535", port)
    return port


@dataclass(frozen=True)
class ServerLimits:
    """The limits of one learner server (defaults in brackets; ``colearn serve`` has an option for each).

    - ``max_bytes`` [1 GiB]: largest weights payload accepted (declared and actual).
    - ``max_header_bytes`` [4 MiB], ``max_arrays`` [10,000]: the weights' JSON header and how many arrays it
      may describe, refused before the header is parsed or anything is allocated.
    - ``max_uploads`` [4], ``max_downloads`` [4]: concurrent test/accept uploads and weights/model/proposal
      downloads; more are refused at once ("server busy", RESOURCE_EXHAUSTED).
    - ``idle_timeout`` [30 s]: a stream that moves no chunk for this long is cancelled.
    - ``stream_timeout`` [600 s]: the longest a stream may take to move its data.
    - ``workers`` [max_uploads + max_downloads + 4]: threads serving calls; must exceed the stream slots.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_arrays: int = DEFAULT_MAX_ARRAYS
    max_uploads: int = 4
    max_downloads: int = 4
    idle_timeout: float = 30.0
    stream_timeout: float = 600.0
    workers: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_header_bytes", "max_arrays", "max_uploads", "max_downloads"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise LimitError(name, "a positive integer", value)
        for name in ("idle_timeout", "stream_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise LimitError(name, "a positive, finite number of seconds", value)
        slots = self.max_uploads + self.max_downloads
        if self.workers is None:
            object.__setattr__(self, "workers", slots + SPARE_WORKERS)
        elif type(self.workers) is not int or self.workers <= slots:
            raise LimitError("workers", f"an integer above the upload and download slots ({slots}), so that Info "
                                        f"and other calls always find a thread", self.workers)

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Watch:
    """One stream under the watchdog: when it started and when it last moved a chunk. While ``working`` (the
    server handles a chunk, e.g. waits for the learner to check a layout) the peer is not idle: not cancelled."""

    def __init__(self, context: Any, what: str):
        self.context, self.what = context, what
        self.started = self.moved = time.monotonic()
        self.working = False
        self.expired: Optional[str] = None

    def touch(self) -> None:
        """A chunk moved (and was handled): the idle clock starts again."""
        self.moved = time.monotonic()
        self.working = False


class StreamGuard:
    """Stream slots and the watchdog that cancels idle or overlong streams (see the module docstring)."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self._slots = {"upload": threading.BoundedSemaphore(limits.max_uploads),
                       "download": threading.BoundedSemaphore(limits.max_downloads)}
        self._watches: set[_Watch] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def acquire(self, kind: str) -> None:
        """Take an ``upload`` or ``download`` slot; none free is a RESOURCE_EXHAUSTED :class:`WireError`."""
        if not self._slots[kind].acquire(blocking=False):
            limit = self.limits.max_uploads if kind == "upload" else self.limits.max_downloads
            raise WireError(f"{BUSY}: {limit} {kind}s in progress (max_{kind}s); try again shortly",
                            "RESOURCE_EXHAUSTED")

    def release(self, kind: str) -> None:
        self._slots[kind].release()

    @contextmanager
    def watch(self, context: Any, what: str) -> Iterator[_Watch]:
        """Watch a stream while it moves data: call ``touch()`` on the result for every chunk."""
        watch = _Watch(context, what)
        with self._changed:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="colearn-stream-watchdog", daemon=True)
                self._thread.start()
            self._watches.add(watch)
            self._changed.notify()
        try:
            yield watch
        finally:
            with self._lock:
                self._watches.discard(watch)

    def _run(self) -> None:
        idle, total = self.limits.idle_timeout, self.limits.stream_timeout
        while True:
            expired = []
            with self._changed:
                if self._closed:
                    return
                now = time.monotonic()
                wake = now + 60.0
                for watch in list(self._watches):
                    if watch.working:  # the server's own work: look again later
                        wake = min(wake, now + idle)
                        continue
                    if now - watch.moved >= idle:
                        watch.expired = f"no data for {idle:g} s (idle_timeout)"
                    elif now - watch.started >= total:
                        watch.expired = f"longer than {total:g} s (stream_timeout)"
                    else:
                        wake = min(wake, watch.moved + idle, watch.started + total)
                        continue
                    self._watches.discard(watch)
                    expired.append(watch)
                if not expired:
                    self._changed.wait(max(0.01, wake - now))
            for watch in expired:  # outside the lock: cancelling wakes the stream's thread
                log.warning("cancelled %s from %s: %s", watch.what, _peer(watch.context), watch.expired)
                watch.context.cancel()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()


def _peer(context: Any) -> str:
    try:
        return str(context.peer())
    except Exception:  # pragma: no cover - a context without a peer
        return "?"
