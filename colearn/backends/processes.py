"""Learners in worker processes: one long-lived process per learner, voters scoring concurrently.

Each worker builds its learner from a picklable zero-argument factory (e.g.
:class:`colearn.run_config.LearnerFactory`), so the learner's data never crosses a process boundary. A
proposal is encoded once (:func:`colearn.encoding.encode_weights`) into one shared-memory segment
and only the segment's name and size go to the voters, which decode it with
:func:`~colearn.encoding.decode_weights`; small blobs travel inline over the pipe instead.

Failures are data. A learner that raises answers with a :class:`Failure` of kind ``"error"`` and its
worker lives on. A worker that dies answers ``"crashed"``; one that does not answer within ``timeout``
seconds answers ``"timeout"`` and is killed. Either way the learner abstains for that call and the
experiment goes on. With ``restart=True`` (default) a dead or killed worker is rebuilt from its
factory the next time it is needed (at most ``max_restarts`` times) and then adopts the most recently
accepted weights, so it rejoins holding the shared model; its own training state (optimiser, random
generator) starts afresh.

``close()`` (also on ``with`` exit, garbage collection and interpreter exit) stops every worker and
unlinks every segment. Workers ignore SIGINT, so Ctrl-C reaches only the driver, which then closes
them; on Linux a worker is also killed by the kernel if the driver dies.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from colearn.backends._worker import describe, worker_main
from colearn.backends.base import Backend, Failure, Outcome
from colearn.backends.shm import (DEFAULT_SHM_THRESHOLD, WeightsSource, new_token, read_source, segment_names,
                                  unlink_quietly, write_source)
from colearn.encoding import WeightsEncodeError, decode_weights
from colearn.ml_interface import ColearnModel, MachineLearningInterface, ModelFormat, ProposedWeights, Weights

Factory = Callable[[], MachineLearningInterface]
START_METHODS = ("spawn", "forkserver")


class BackendStartError(RuntimeError):
    """A learner's worker could not be started (its factory raised, or it did not report in time)."""


@dataclass
class _Worker:
    index: int
    factory: Factory
    process: Any = None
    conn: Any = None
    restarts: int = 0
    dead_reason: Optional[str] = None  # set when the worker must be (re)started before its next request
    pid: Optional[int] = None


@dataclass
class _Segments:
    """Every segment name this backend caused, and which weights objects the live ones hold."""

    names: Set[str] = field(default_factory=set)
    roles: Dict[str, Tuple[Weights, WeightsSource]] = field(default_factory=dict)

    def set_role(self, role: str, weights: Weights, source: WeightsSource) -> None:
        old = self.roles.get(role)
        self.roles[role] = (weights, source)
        if old is not None:
            self.release_if_unused(old[1])

    def lookup(self, weights: Weights) -> Optional[WeightsSource]:
        for held, source in self.roles.values():
            if held is weights:
                return source
        return None

    def release_if_unused(self, source: WeightsSource) -> None:
        if source.name is not None and all(s.name != source.name for _, s in self.roles.values()):
            unlink_quietly(source.name)
            self.names.discard(source.name)

    def release_all(self) -> None:
        self.roles.clear()
        for name in list(self.names):
            unlink_quietly(name)
        self.names.clear()


def _shutdown(workers: List[_Worker], segments: _Segments) -> None:
    """Stop all workers (politely, then by force) and unlink all segments. Idempotent."""
    for worker in workers:
        if worker.conn is not None and worker.process is not None and worker.process.is_alive():
            try:
                worker.conn.send(("close", 0, ()))
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + 2.0
    for worker in workers:
        _stop(worker, max(0.0, deadline - time.monotonic()))
    segments.release_all()


def _stop(worker: _Worker, grace: float = 0.0) -> None:
    process, worker.process = worker.process, None
    if process is not None:
        process.join(grace)
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        try:
            process.close()
        except ValueError:
            pass
    if worker.conn is not None:
        worker.conn.close()
        worker.conn = None


class ProcessBackend(Backend):
    """Runs each learner in its own worker process; see the module docstring for the failure rules.

    ``timeout`` bounds every request to a worker in seconds (``None`` waits forever, still noticing
    crashes); ``start_timeout`` bounds building a learner (default: ``max(timeout, 120)``);
    ``shm_threshold`` is the blob size from which weights go through shared memory.
    """

    name = "processes"

    def __init__(self, factories: Sequence[Factory], *, timeout: Optional[float] = 60.0,
                 start_method: str = "spawn", start_timeout: Optional[float] = None, restart: bool = True,
                 max_restarts: int = 3, shm_threshold: int = DEFAULT_SHM_THRESHOLD):
        factories = list(factories)
        if not factories:
            raise ValueError("factories: need at least one learner factory")
        if not all(callable(f) for f in factories):
            raise TypeError("factories: every factory must be a zero-argument callable")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        if shm_threshold < 0:
            raise ValueError(f"shm_threshold must be >= 0, got {shm_threshold!r}")
        self.timeout = timeout
        self.start_timeout = start_timeout if start_timeout is not None else max(timeout or 0.0, 120.0)
        self.restart, self.max_restarts, self.shm_threshold = restart, max_restarts, shm_threshold
        self.token = new_token()
        self._names = segment_names(self.token)
        self._keys = itertools.count()
        self._seq = itertools.count(1)
        self._context = multiprocessing.get_context(start_method)
        self._workers = [_Worker(i, factory) for i, factory in enumerate(factories)]
        self._segments = _Segments()
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._segments)
        try:
            self._start(self._workers)
            failed = [w for w in self._workers if w.dead_reason is not None]
            if failed:
                raise BackendStartError("; ".join(f"learner {w.index}: {w.dead_reason}" for w in failed))
        except BaseException:
            self.close()
            raise

    # ---- worker lifecycle -------------------------------------------------------------------
    def _start(self, workers: Sequence[_Worker]) -> None:
        for worker in workers:
            parent, child = self._context.Pipe(duplex=True)
            process = self._context.Process(target=worker_main, args=(worker.factory, child, os.getpid()),
                                            name=f"colearn-learner-{worker.index}", daemon=True)
            process.start()
            child.close()
            worker.process, worker.conn, worker.dead_reason = process, parent, None
        deadline = time.monotonic() + self.start_timeout
        pending = {w.conn: w for w in workers}
        while pending:
            ready = wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                for worker in pending.values():
                    worker.dead_reason = f"did not start within {self.start_timeout:g} s"
                    _stop(worker)
                return
            for conn in ready:
                worker = pending.pop(conn)
                try:
                    status, detail = conn.recv()
                except (EOFError, OSError):
                    status, detail = "start_failed", f"worker died while starting ({self._exitcode(worker)})"
                if status == "ready":
                    worker.pid = detail
                else:
                    worker.dead_reason = f"factory failed: {detail}"
                    _stop(worker, 1.0)

    def _exitcode(self, worker: _Worker) -> str:
        if worker.process is None:
            return "exit code unknown"
        worker.process.join(0.5)
        return f"exit code {worker.process.exitcode}"

    def _ensure_alive(self, worker: _Worker) -> Optional[Failure]:
        if worker.dead_reason is None:
            return None
        if not self.restart or worker.restarts >= self.max_restarts:
            return Failure(worker.index, f"worker is down ({worker.dead_reason}); not restarted", "crashed")
        worker.restarts += 1
        self._start([worker])
        if worker.dead_reason is not None:
            return Failure(worker.index, f"worker restart failed: {worker.dead_reason}", "crashed")
        consensus = self._segments.roles.get("consensus")
        if consensus is not None:  # rejoin with the shared model
            outcome = self._request([worker.index], "accept", lambda i: (consensus[1],))[worker.index]
            if isinstance(outcome, Failure):
                return outcome
        return None

    def _mark_dead(self, worker: _Worker, reason: str, kill: bool) -> None:
        worker.dead_reason = reason
        _stop(worker, 0.0 if kill else 0.5)

    # ---- requests ---------------------------------------------------------------------------
    def _request(self, learners: Sequence[int], op: str,
                 make_args: Callable[[int], Tuple[Any, ...]]) -> Dict[int, Outcome[Any]]:
        """Send ``op`` to each learner's worker and gather answers (or Failures) until the timeout."""
        if self._closed:
            return {i: Failure(i, "backend is closed", "error") for i in learners}
        results: Dict[int, Outcome[Any]] = {}
        pending: Dict[Any, Tuple[_Worker, int]] = {}
        for i in learners:
            worker = self._workers[i]
            failure = self._ensure_alive(worker)
            if failure is not None:
                results[i] = failure
                continue
            seq = next(self._seq)
            try:
                worker.conn.send((op, seq, make_args(i)))
            except (OSError, ValueError):  # the pipe broke: the worker is dead
                results[i] = self._crashed(worker)
                continue
            pending[worker.conn] = (worker, seq)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        sentinels = {w.process.sentinel: conn for conn, (w, _) in pending.items()}
        while pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait(list(pending) + [s for s, c in sentinels.items() if c in pending], timeout=remaining)
            if not ready:
                break
            for handle in ready:
                conn = sentinels.get(handle, handle)  # a dead process: read what it may have sent first
                if conn not in pending:
                    continue
                worker, seq = pending[conn]
                if handle is not conn:  # the process ended
                    if conn.poll(0):
                        continue  # its last answer (or EOF) is on the pipe: read it through the pipe
                    pending.pop(conn)
                    results[worker.index] = self._crashed(worker)
                    continue
                pending.pop(conn)
                results[worker.index] = self._receive(worker, seq)
        for worker, _ in pending.values():
            self._mark_dead(worker, f"timed out after {self.timeout:g} s", kill=True)
            results[worker.index] = Failure(worker.index, f"no answer within {self.timeout:g} s (worker killed)",
                                             "timeout")
        return {i: results[i] for i in learners}

    def _receive(self, worker: _Worker, seq: int) -> Outcome[Any]:
        try:
            status, got_seq, payload = worker.conn.recv()
        except (EOFError, OSError):
            return self._crashed(worker)
        if got_seq != seq:
            self._mark_dead(worker, "answered out of turn", kill=True)
            return Failure(worker.index, f"worker answered request {got_seq}, expected {seq}", "invalid")
        if status in ("err", "refused"):  # refused: the weights it was sent do not fit its model
            return Failure(worker.index, str(payload), "refused" if status == "refused" else "error")
        return payload

    def _crashed(self, worker: _Worker) -> Failure:
        code = self._exitcode(worker)
        self._mark_dead(worker, f"died ({code})", kill=True)
        return Failure(worker.index, f"worker process of learner {worker.index} died ({code})", "crashed")

    # ---- the Backend interface ----------------------------------------------------------------
    @property
    def n_learners(self) -> int:
        return len(self._workers)

    @property
    def worker_pids(self) -> List[Optional[int]]:
        """Process ids of the live workers (None for a worker that is down)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    def _fetch(self, learner: int, op: str, role: str) -> Outcome[Weights]:
        name, key = next(self._names), f"{self.token}-{next(self._keys)}"
        self._segments.names.add(name)
        outcome = self._request([learner], op, lambda i: (key, name, self.shm_threshold))[learner]
        if isinstance(outcome, Failure):
            self._segments.names.discard(name)
            unlink_quietly(name)  # a worker may have died half-way through writing it
            return outcome
        source: WeightsSource = outcome
        if source.name is None:
            self._segments.names.discard(name)
        try:
            weights = read_source(source)
        except ValueError as exc:
            self._segments.release_if_unused(source)
            return Failure(learner, f"invalid weights from worker: {exc}", "invalid")
        self._segments.set_role(role, weights, source)
        return weights

    def _source_for(self, weights: Weights) -> Tuple[Optional[WeightsSource], Optional[str]]:
        source = self._segments.lookup(weights)
        if source is not None:
            return source, None
        name = next(self._names)
        try:
            source = write_source(weights, f"{self.token}-{next(self._keys)}", name, self.shm_threshold)
        except (WeightsEncodeError, TypeError, ValueError, MemoryError, OverflowError) as exc:
            return None, f"weights cannot be sent to a worker process: {describe(exc)}"
        if source.name is not None:
            self._segments.names.add(source.name)
        return source, None

    def _with_weights(self, weights: Weights, learners: Sequence[int], op: str,
                      role: Optional[str]) -> Dict[int, Outcome[Any]]:
        source, error = self._source_for(weights)
        if source is None:
            return {i: Failure(i, error or "weights cannot be sent", "invalid") for i in learners}
        try:
            return self._request(learners, op, lambda i: (source,))
        finally:
            if role is not None:
                self._segments.set_role(role, weights, source)
            else:
                self._segments.release_if_unused(source)

    def propose(self, learner: int) -> Outcome[Weights]:
        return self._fetch(learner, "propose", "recent")

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        answers = self._with_weights(weights, learners, "test", None)
        return {i: a if isinstance(a, Failure) else _proposed(i, weights, a) for i, a in answers.items()}

    def accept(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[None]]:
        return self._with_weights(weights, learners, "accept", "consensus")

    def current_weights(self, learner: int) -> Outcome[Weights]:
        return self._fetch(learner, "current_weights", "recent")

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        outcome = self._request([learner], "current_model", lambda i: ())[learner]
        if isinstance(outcome, Failure):
            return outcome
        model_format, model_file, blob = outcome
        try:
            model = None if blob is None else decode_weights(blob)
            return ColearnModel(model_format=ModelFormat(model_format), model_file=model_file, model=model)
        except ValueError as exc:
            return Failure(learner, f"invalid model from worker: {exc}", "invalid")

    def close(self) -> None:
        """Stop every worker and unlink every shared-memory segment. Safe to call twice."""
        self._closed = True
        self._finalizer()


def _proposed(learner: int, weights: Weights, verdict: Dict[str, Any]) -> Outcome[ProposedWeights]:
    try:
        return ProposedWeights(weights=weights, **verdict)
    except (TypeError, ValueError) as exc:
        return Failure(learner, f"invalid verdict from worker: {exc}", "invalid")
