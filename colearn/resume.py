"""Continue a run whose driver died: ``colearn run --resume OUT`` gives the results an uninterrupted run gives.

While a run goes on, :class:`~colearn.journal.RoundJournal` writes each finished round to ``OUT/rounds.jsonl``
and :class:`AcceptedWeights` keeps each accepted model in ``OUT/weights/<sha256>.clw`` (colearn's typed
encoding, never pickle; the name is the sha256 of the file, checked when read back), with
``OUT/weights/accepted.jsonl`` saying which round accepted which file.

To resume, :func:`restore` takes a backend whose learners were just built and:

1. replays each learner's proposals (as many as it made before, results discarded), so that whatever state
   proposing advances inside a learner -- its random generator (e.g. ``SKLearnLearner``'s shuffles), a DP
   accountant -- continues as it would have (exact for learners whose proposals consume that state
   independently of the weights they hold, as colearn's scikit-learn learners do);
2. gives every learner the last weights it accepted (learners that never accepted any stay as built);
3. restores the experiment: rounds so far, held scores, DP budgets, the learners whose budget is spent, and
   so the round counter.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from colearn.backends.base import Backend, Failure
from colearn.encoding import decode_weights, encode_weights
from colearn.hooks import Callback
from colearn.journal import JOURNAL_NAME, RoundJournal
from colearn.ml_interface import Weights
from colearn.protocol import is_budget_exhausted
from colearn.results import ExperimentResults, RoundRecord

WEIGHTS_DIR = "weights"
INDEX_NAME = "accepted.jsonl"


class ResumeError(ValueError):
    """The run cannot be resumed as asked (no journal, weights missing or corrupt, contradicting settings)."""


def _fsync_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class AcceptedWeights(Callback):
    """Keeps every accepted model in ``out_dir/weights`` by content hash and notes which round accepted it.

    Files no learner holds any more are deleted once the round that superseded them is in the journal
    (list this callback after the :class:`RoundJournal`).
    """

    def __init__(self, out_dir: Union[str, Path], held: Optional[Dict[int, str]] = None, *, resumed: bool = False):
        self.dir = Path(out_dir) / WEIGHTS_DIR
        self.held: Dict[int, str] = dict(held or {})  # learner -> hash of the weights it holds
        self.resumed = resumed
        self._pending: Optional[str] = None

    def on_experiment_start(self, experiment: Any) -> None:
        """A fresh run in this folder: forget what an earlier run kept here."""
        if self.resumed:
            return
        (self.dir / INDEX_NAME).unlink(missing_ok=True)
        for path in self.dir.glob("*.clw"):
            path.unlink(missing_ok=True)

    def on_weights_accepted(self, round_index: int, weights: Any) -> None:
        blob = encode_weights(weights.weights)
        digest = hashlib.sha256(blob).hexdigest()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{digest}.clw"
        if not path.exists():
            _fsync_write(path, blob)
        with open(self.dir / INDEX_NAME, "a", encoding="utf-8") as index:
            index.write(json.dumps({"round_index": round_index, "sha256": digest}) + "\n")
            index.flush()
            os.fsync(index.fileno())
        self._pending = digest

    def on_round_end(self, record: RoundRecord) -> None:
        digest, self._pending = self._pending, None
        if digest is None or not record.accepted:
            return
        errors = record.accept_errors or [None] * len(record.votes)
        for learner, error in enumerate(errors):
            if error is None:
                self.held[learner] = digest
        keep = set(self.held.values()) | {digest}
        for path in self.dir.glob("*.clw"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)


class AppendingJournal(RoundJournal):
    """A :class:`RoundJournal` that continues an existing ``rounds.jsonl`` (the resumed run's rounds follow)."""

    def __init__(self, out_dir: Union[str, Path], results: ExperimentResults, *, fsync: bool = True):
        super().__init__(out_dir, fsync=fsync)
        header = results.model_dump(mode="json", exclude={"rounds"})
        lines = [json.dumps({"kind": "experiment", "results": header})]
        lines += [json.dumps({"kind": "round", "record": r.model_dump(mode="json")}) for r in results.rounds]
        _fsync_write(self.path, ("\n".join(lines) + "\n").encode())  # drops a line cut off by the crash
        self._file = open(self.path, "a", encoding="utf-8")


def accepted_index(out_dir: Union[str, Path]) -> Dict[int, str]:
    """Round index -> sha256 of the weights accepted in that round (a line cut off by a crash is ignored)."""
    path = Path(out_dir) / WEIGHTS_DIR / INDEX_NAME
    found: Dict[int, str] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        try:
            entry = json.loads(line)
            found[int(entry["round_index"])] = str(entry["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ResumeError(f"{path}: not an accepted-weights entry: {line[:80]!r}") from exc
    return found


def held_weights(results: ExperimentResults, index: Dict[int, str]) -> Dict[int, str]:
    """Learner -> sha256 of the last weights it accepted (learners that never accepted any are absent)."""
    held: Dict[int, str] = {}
    for record in results.rounds:
        if not record.accepted:
            continue
        if record.round_index not in index:
            raise ResumeError(f"the weights accepted in round {record.round_index} are not in "
                              f"{WEIGHTS_DIR}/{INDEX_NAME}: this run cannot be resumed exactly")
        errors = record.accept_errors or [None] * results.n_learners
        for learner, error in enumerate(errors):
            if error is None:
                held[learner] = index[record.round_index]
    return held


def load_weights(out_dir: Union[str, Path], digest: str) -> Weights:
    """Accepted weights by their sha256, checked against it before decoding (typed decode, no pickle)."""
    path = Path(out_dir) / WEIGHTS_DIR / f"{digest}.clw"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ResumeError(f"accepted weights {path} are missing: {exc.strerror}") from None
    if hashlib.sha256(blob).hexdigest() != digest:
        raise ResumeError(f"accepted weights {path} do not match their hash: the file was changed")
    return Weights(weights=decode_weights(blob))


def restore(experiment: Any, results: ExperimentResults, out_dir: Union[str, Path]) -> Dict[int, str]:
    """Bring a fresh ``experiment`` (its backend's learners just built) to where ``results`` stopped.

    Returns learner -> sha256 of the weights it now holds (for :class:`AcceptedWeights`).
    """
    backend: Backend = experiment.backend
    n = backend.n_learners
    if results.n_learners != n:
        raise ResumeError(f"the journal has {results.n_learners} learners, the backend {n}")
    held = held_weights(results, accepted_index(out_dir))
    kept = {digest: load_weights(out_dir, digest) for digest in dict.fromkeys(held.values())}  # all checked first
    exhausted = _replay_proposals(backend, results.rounds)
    for digest, weights in kept.items():
        learners = [i for i, d in held.items() if d == digest]
        failures = [o for o in backend.accept(weights, learners).values() if isinstance(o, Failure)]
        if failures:
            raise ResumeError(f"learner {failures[0].learner} could not adopt its weights: {failures[0].error}")
    _restore_state(experiment, results, exhausted)
    experiment.hooks.on_experiment_start(experiment)  # progress views and journals start (no evaluation is rerun)
    return held


def _replay_proposals(backend: Backend, rounds: Sequence[RoundRecord]) -> set[int]:
    """Ask each learner for as many proposals as it made (discarded); returns those whose DP budget is spent."""
    exhausted: set[int] = set()
    for record in rounds:
        if record.proposer is not None:
            if is_budget_exhausted(backend.propose(record.proposer)):
                exhausted.add(record.proposer)
    return exhausted


def _restore_state(experiment: Any, results: ExperimentResults, exhausted: set[int]) -> None:
    experiment.restore(results, exhausted)


def journal_config(out_dir: Union[str, Path]) -> Dict[str, Any]:
    """The run configuration recorded in ``out_dir``'s journal (what `colearn run` was given)."""
    from colearn.journal import read_journal

    path = Path(out_dir) / JOURNAL_NAME
    if not path.is_file():
        raise ResumeError(f"--resume: no {JOURNAL_NAME} in {out_dir}: nothing to resume")
    return {key: value for key, value in read_journal(path).config.items() if key != "protocol"}


def contradictions(original: Dict[str, Any], given: Dict[str, Any]) -> List[str]:
    """The settings in ``given`` that differ from the original run's (``key: original != given``)."""
    return [f"{key}: the run used {original.get(key)!r}, not {value!r}" for key, value in given.items()
            if original.get(key) != value]


__all__ = ["AcceptedWeights", "AppendingJournal", "ResumeError", "accepted_index", "contradictions",
           "held_weights", "journal_config", "load_weights", "restore"]
