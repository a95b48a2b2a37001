"""The page's ASGI app (Starlette): the page, its static files, the view as JSON and as server-sent events.

Read-only: every route is a GET. A background task polls the source's files (a ``stat`` every ``poll_seconds``);
the view is rebuilt only after a change and only while someone is looking (an open event stream or a request),
so a dashboard nobody watches costs the experiment nothing but those ``stat`` calls. Rebuilding grows with the
rounds (about 10 ms for 100 rounds, see bench/dashboard_overhead.py), so the streams wait at least
``1 / max_share`` times the last rebuild's duration before the next one: the page never takes more than that share
of the process's time, however long the run, and lags a little behind long runs instead.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from importlib import resources
from typing import Any, AsyncIterator, Iterable, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from colearn.dashboard.auth import Guard
from colearn.dashboard.source import FolderSource

KEEPALIVE_SECONDS = 15.0
MAX_STREAMS = 32
"""Open event streams at most (each is a page); more are refused with 503 rather than piling up."""


class Hub:
    """Follows a source and wakes every open event stream when its view changes."""

    def __init__(self, source: FolderSource, poll_seconds: float = 0.25, max_share: float = 0.05):
        self.source = source
        self.poll_seconds = poll_seconds
        self.max_share = max_share
        self.version = 0
        self.listeners = 0
        self.closing = False
        self._changed: Optional[asyncio.Event] = None

    @property
    def changed(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _announce(self) -> None:
        self.version += 1
        self.changed.set()
        self._changed = asyncio.Event()

    async def follow(self) -> None:
        """Poll the files until closed; announce a change to the streams open at the time."""
        while not self.closing:
            pause = self.poll_seconds
            if self.listeners and self.source.changed():
                started = time.perf_counter()
                self.source.view_text()
                pause = max(pause, (time.perf_counter() - started) / self.max_share)
                self._announce()
            await asyncio.sleep(pause)

    async def events(self, request: Request) -> AsyncIterator[str]:
        """The event stream: the view now, then again after every change; a comment now and then keeps it open."""
        self.listeners += 1
        try:
            yield "retry: 1000\n\n"
            while not self.closing:
                changed = self.changed
                yield f"event: view\nid: {self.version}\ndata: {self.source.view_text()}\n\n"
                waited = 0.0
                while not self.closing and not changed.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=0.5)
                    waited += 0.5
                    if waited >= KEEPALIVE_SECONDS:
                        waited = 0.0
                        yield ": keep-alive\n\n"
        finally:
            self.listeners -= 1


def _static(name: str) -> Any:
    return resources.files("colearn.dashboard") / "static" / name


def create_app(source: FolderSource, *, tokens: Optional[Iterable[str]] = None, loopback_only: bool = True,
               poll_seconds: float = 0.25) -> Guard:
    """The dashboard of ``source``, behind the token check when ``tokens`` are given (see :mod:`.auth`)."""
    hub = Hub(source, poll_seconds)

    async def index(request: Request) -> Response:
        return FileResponse(str(_static("index.html")), media_type="text/html")

    async def view(request: Request) -> Response:
        return Response(source.view_text(), media_type="application/json")

    async def events(request: Request) -> Response:
        if hub.listeners >= MAX_STREAMS:
            return Response(f"too many open pages (at most {MAX_STREAMS})", status_code=503,
                            media_type="text/plain", headers={"retry-after": "10"})
        return StreamingResponse(hub.events(request), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.follow())
        try:
            yield
        finally:
            hub.closing = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    static_dir = str(resources.files("colearn.dashboard") / "static")
    app = Starlette(routes=[Route("/", index), Route("/api/view", view), Route("/events", events),
                            Mount("/static", StaticFiles(directory=static_dir), name="static")],
                    lifespan=lifespan)
    app.state.hub = hub
    guard = Guard(app, tokens=tokens, loopback_only=loopback_only)
    guard.hub = hub  # type: ignore[attr-defined]
    return guard


__all__ = ["create_app", "Hub"]
