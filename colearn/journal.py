"""The round journal: ``rounds.jsonl`` beside ``results.json``, one line per finished round, written as it ends.

A driver that is killed mid-run leaves every finished round on disk; a live page or an observer reads the file
while the experiment runs. Format (JSON lines, UTF-8):

- line 1: ``{"kind": "experiment", "results": {...}}`` -- the :class:`ExperimentResults` fields (configuration,
  seed, versions, initial scores) with an empty ``rounds`` list, written once the initial evaluation is done;
- then one ``{"kind": "round", "record": {...}}`` per round, a :class:`RoundRecord` as JSON.

:func:`read_journal` rebuilds the results from it; a last line cut off by a crash is ignored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Optional, Union

from colearn.hooks import Callback
from colearn.results import ExperimentResults, RoundRecord

JOURNAL_NAME = "rounds.jsonl"


class RoundJournal(Callback):
    """Appends each finished round to ``out_dir/rounds.jsonl`` (flushed and fsynced, so a crash loses none).

    ``fsync=False`` trades that guarantee for speed (a few hundred microseconds a round).
    """

    def __init__(self, out_dir: Union[str, Path], *, fsync: bool = True):
        self.path = Path(out_dir) / JOURNAL_NAME
        self.fsync = fsync
        self._experiment: Any = None
        self._file: Optional[IO[str]] = None

    def on_experiment_start(self, experiment: Any) -> None:
        self._experiment = experiment

    def _write(self, entry: dict) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")
            header = self._experiment.results.model_dump(mode="json", exclude={"rounds"}) \
                if self._experiment is not None else {}
            self._file.write(json.dumps({"kind": "experiment", "results": header}) + "\n")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def on_round_end(self, record: RoundRecord) -> None:
        self._write({"kind": "round", "record": record.model_dump(mode="json")})

    def on_experiment_end(self, results: ExperimentResults) -> None:
        if self._file is None and self._experiment is not None:  # no round ran: still write the header
            self._write({"kind": "end"})
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_journal(path: Union[str, Path]) -> ExperimentResults:
    """The results recorded so far in a journal (a folder holding ``rounds.jsonl``, or the file itself).

    Raises ``ValueError`` naming the file and line when a complete line is not a journal entry.
    """
    path = Path(path)
    if path.is_dir():
        path = path / JOURNAL_NAME
    lines = path.read_text(encoding="utf-8").split("\n")
    complete, last = lines[:-1], lines[-1]  # the text after the last newline is a line cut off mid-write
    del last
    results: Optional[ExperimentResults] = None
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            kind = entry["kind"]
            if kind == "experiment":
                results = ExperimentResults.model_validate({**entry["results"], "rounds": []})
            elif kind == "round":
                if results is None:
                    raise ValueError("a round comes before the experiment header")
                results.rounds.append(RoundRecord.model_validate(entry["record"]))
            elif kind != "end":
                raise ValueError(f"unknown entry kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}, line {number}: not a colearn journal entry ({exc})") from exc
    if results is None:
        raise ValueError(f"{path}: no experiment header yet")
    return results


__all__ = ["JOURNAL_NAME", "RoundJournal", "read_journal"]
