"""A live page of an experiment: the vote history, scores, costs and flags, updating as each round ends.

- :mod:`colearn.dashboard.model`: the view, a pure function of the results (what the page shows);
- :mod:`colearn.dashboard.source`: an output folder followed as the driver writes it (``rounds.jsonl``,
  ``results.json``);
- :mod:`colearn.dashboard.auth`: loopback-only by default, a token elsewhere (as ``colearn serve``);
- :mod:`colearn.dashboard.app`: the Starlette app (page, static files, JSON view, server-sent events);
- :mod:`colearn.dashboard.server`: uvicorn in a background thread (:class:`DashboardServer`).

Needs the ``dashboard`` extra (``pip install 'colearn[dashboard]'``); ``import colearn`` does not import it.
"""
from __future__ import annotations

from colearn.dashboard.model import build_view
from colearn.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "build_view"]
