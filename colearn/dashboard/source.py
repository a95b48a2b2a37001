"""Where the page's data comes from: an output folder, followed while the experiment writes it.

The driver appends ``rounds.jsonl`` as each round ends and writes ``results.json`` at the end (see
:mod:`colearn.journal`). A :class:`FolderSource` notices either file changing from its size and modification time
(a ``stat``, cheap enough to poll), and reads the results again only when asked for a view after a change. A
``results.json`` at least as new as the journal is the finished run (it also carries ``extra``: ledger gas, the
baseline); otherwise the journal is the running one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from pydantic import ValidationError

from colearn.dashboard.model import build_view, empty_view
from colearn.journal import JOURNAL_NAME, read_journal
from colearn.results import ExperimentResults

RESULTS_NAME = "results.json"
Stamp = Tuple[Optional[Tuple[int, int]], Optional[Tuple[int, int]]]


def _stat(path: Optional[Path]) -> Optional[Tuple[int, int]]:
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


class FolderSource:
    """An output folder of `colearn run` (or a single ``results.json`` / ``rounds.jsonl``) as page views.

    ``since_ns`` (a ``time.time_ns()``) ignores files last written before it: what an earlier run left in the
    folder, while a new run has not finished its first round.
    """

    def __init__(self, path: Union[str, Path], *, since_ns: Optional[int] = None):
        path = Path(path)
        self.since_ns = since_ns
        if path.is_file():  # a file named by the user: a journal (.jsonl) beside its results.json, or a results file
            self.folder = path.parent
            is_journal = path.suffix == ".jsonl"
            self.journal: Optional[Path] = path if is_journal else (
                path.parent / JOURNAL_NAME if path.name == RESULTS_NAME else None)  # another name: that file alone
            self.results = path.parent / RESULTS_NAME if is_journal else path
        else:
            self.folder, self.journal, self.results = path, path / JOURNAL_NAME, path / RESULTS_NAME
        self._stamp: Optional[Stamp] = None
        self._view_text: Optional[str] = None

    def stamp(self) -> Stamp:
        """Size and modification time of both files (None: absent, or older than ``since_ns``)."""
        stamps = _stat(self.journal), _stat(self.results)
        if self.since_ns is None:
            return stamps
        return tuple(s if s is not None and s[0] >= self.since_ns else None for s in stamps)  # type: ignore

    def changed(self) -> bool:
        """True when the files differ from the last view built."""
        return self.stamp() != self._stamp

    def load(self) -> Tuple[Optional[ExperimentResults], bool, str]:
        """(results so far or None, finished, what was read or why nothing could be)."""
        journal, results = self.stamp()
        if results is not None and (journal is None or results[0] >= journal[0]):
            try:
                return ExperimentResults.load(self.results), True, str(self.results)
            except (OSError, ValueError, ValidationError) as exc:
                if journal is None:
                    return None, False, f"{self.results} is not a colearn results file: {str(exc).splitlines()[0]}"
        if journal is None:
            return None, False, f"waiting for {self.journal or self.results} (no round has finished yet)"
        try:
            return read_journal(self.journal), False, str(self.journal)
        except (OSError, ValueError, ValidationError) as exc:
            return None, False, str(exc).splitlines()[0]

    def view(self) -> Dict[str, Any]:
        """The page's view of the folder as it is now."""
        results, finished, what = self.load()
        if results is None:
            return empty_view(what, source=str(self.folder))
        view = build_view(results, finished=finished, source=what)
        view["status"] = "finished" if finished else "running"
        return view

    def view_text(self) -> str:
        """:meth:`view` as JSON text, rebuilt only when the files changed since the last call."""
        stamp = self.stamp()
        if self._view_text is None or stamp != self._stamp:
            self._view_text = json.dumps(finite(self.view()), allow_nan=False, separators=(",", ":"))
            self._stamp = stamp
        return self._view_text


__all__ = ["FolderSource", "RESULTS_NAME"]
