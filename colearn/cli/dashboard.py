"""`colearn dashboard PATH` (the live page of an output folder) and `colearn run --dashboard`.

``register(app)`` adds the command and gives ``run`` two options: ``--dashboard`` serves the page of ``--out`` on
127.0.0.1 while the run goes, from a child process (the URL is printed; the page follows ``rounds.jsonl`` as each
round ends; see :mod:`colearn.dashboard.process` for why not a thread) and ``--dashboard-port`` picks its port. Nothing here imports Starlette or uvicorn until a page is served.
"""
from __future__ import annotations

import functools
import inspect
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from colearn.cli.common import add_options, console, fail as _fail, wrap_run_command

MISSING = "the dashboard needs the 'dashboard' extra: pip install 'colearn[dashboard]'"


def _start(path: Path, *, child: bool = False, **options: Any) -> Any:
    """A started server (``child``: a :class:`DashboardProcess`); a missing extra or a bad option exits with one line."""
    try:
        import starlette  # noqa: F401  (checked here, so that a missing extra is one line, also for the child)
        import uvicorn  # noqa: F401

        from colearn.dashboard.process import DashboardProcess
        from colearn.dashboard.server import DashboardServer

        return (DashboardProcess if child else DashboardServer)(path, **options).start()
    except ImportError as exc:
        _fail(f"{MISSING} ({exc})")
    except (ValueError, OSError) as exc:
        _fail(str(exc))


def dashboard(
    path: Path = typer.Argument(..., help="an output folder of `colearn run` (finished or running), or its "
                                          "results.json / rounds.jsonl"),
    host: str = typer.Option("127.0.0.1", help="address to bind; off loopback a token is required"),
    port: int = typer.Option(8765, help="port to bind (0: any free port)"),
    token_file: Optional[Path] = typer.Option(None, "--token-file",
                                              help="accepted tokens, one per line (default: $COLEARN_TOKEN)"),
) -> None:
    """Serve the live page of an experiment's output folder until interrupted (Ctrl-C)."""
    if not path.exists():
        _fail(f"PATH: no such file or folder {path}")
    server = _start(path, host=host, port=port, token_file=token_file)
    auth = f", {len(server.tokens)} token(s): open {server.url}?token=YOUR_TOKEN once" if server.tokens else ""
    console.print(f"dashboard of {path}: {server.url}{auth} (Ctrl-C stops)", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    server.stop()


def _with_dashboard_options(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def wrapped(*args: Any, dashboard: bool = False, dashboard_port: int = 0, **kwargs: Any) -> Any:
        if not dashboard:
            return run(*args, **kwargs)
        out = Path(kwargs.get("out") or "colearn-out")
        server = _start(out, child=True, port=dashboard_port, since_ns=time.time_ns())
        console.print(f"dashboard: {server.url} (live while the run goes; afterwards `colearn dashboard {out}`)",
                      highlight=False, soft_wrap=True)
        sys.stdout.flush()
        try:
            return run(*args, **kwargs)
        finally:
            server.stop()  # after open pages got the finished results

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("dashboard", keyword, annotation=bool, default=typer.Option(
                  False, "--dashboard", show_default=False,
                  help="serve a live page of the run on 127.0.0.1 (URL printed)")),
              inspect.Parameter("dashboard_port", keyword, annotation=int, default=typer.Option(
                  0, "--dashboard-port", show_default=False,
                  help="port of --dashboard's page (default any free port)"))]
    return add_options(run, wrapped, params, "_dashboard_options")


def register(app: typer.Typer) -> None:
    """Add `colearn dashboard` and `colearn run --dashboard/--dashboard-port` to ``app``."""
    if not any(info.name == "dashboard" for info in app.registered_commands):
        app.command("dashboard")(dashboard)
    wrap_run_command(app, "_dashboard_options", _with_dashboard_options)
