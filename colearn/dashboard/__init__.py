"""A live page of an experiment: the vote history, scores, costs and flags, updating as each round ends.

- :mod:`colearn.dashboard.model`: the view, a pure function of the results (what the page shows);
- :mod:`colearn.dashboard.source`: an output folder followed as the driver writes it (``rounds.jsonl``,
  ``results.json``);
- :mod:`colearn.dashboard.auth`: loopback-only by default, a token elsewhere (as ``colearn serve``);
- :mod:`colearn.dashboard.app`: the Starlette app (page, static files, JSON view, server-sent events);
- :mod:`colearn.dashboard.server`: uvicorn in a background thread (:class:`DashboardServer`);
- :mod:`colearn.dashboard.process`: the same in a child process (:class:`DashboardProcess`), which is how
  ``colearn run --dashboard`` serves it, so that the page never shares the experiment's interpreter.

Needs the ``dashboard`` extra (``pip install 'colearn[dashboard]'``); ``import colearn`` does not import it.
"""
from __future__ import annotations

from colearn.dashboard.model import build_view
from colearn.dashboard.process import DashboardProcess
from colearn.dashboard.server import DashboardServer

__all__ = ["DashboardProcess", "DashboardServer", "build_view"]
