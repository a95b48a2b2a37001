"""The loop that runs inside one learner's worker process (used by :mod:`colearn.backends.processes`).

The worker builds its learner from a picklable zero-argument factory, so the learner's data never
crosses a process boundary, then answers requests from its pipe until told to close or the pipe
breaks. Weights arrive and leave as :class:`~colearn.backends.shm.WeightsSource` (inline blob or a
shared-memory segment); only small plain values (scores, summaries, error texts) are pickled.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

from colearn.backends.shm import WeightsSource, read_source, write_source
from colearn.encoding import encode_weights
from colearn.ml_interface import MachineLearningInterface, ProposalRefused, ProposedWeights, Weights


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker if the driver dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # best effort: EOF on the pipe also ends the worker
        pass


class _Decoded:
    """The last few weights this worker decoded, so test-then-accept of one proposal decodes it once."""

    def __init__(self, size: int = 2):
        self.size = size
        self.entries: "OrderedDict[str, Weights]" = OrderedDict()

    def get(self, source: WeightsSource) -> Weights:
        weights = self.entries.get(source.key)
        if weights is None:
            weights = read_source(source)
            self.entries[source.key] = weights
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return weights


def _verdict(result: Any) -> Dict[str, Any]:
    if not isinstance(result, ProposedWeights):
        raise TypeError(f"mli_test_weights returned {type(result).__name__}, expected ProposedWeights")
    return {"vote_score": result.vote_score, "test_score": result.test_score, "vote": result.vote,
            "criterion": result.criterion, "evaluation_results": result.evaluation_results}


def _weights_out(result: Any, what: str, key: str, name: str, threshold: int) -> WeightsSource:
    if not isinstance(result, Weights):
        raise TypeError(f"{what} returned {type(result).__name__}, expected Weights")
    return write_source(result, key, name, threshold)


def _model_out(model: Any) -> Tuple[int, Optional[str], Optional[bytes]]:
    blob = None if model.model is None else encode_weights(model.model)
    return int(model.model_format), model.model_file, blob


def handle(learner: MachineLearningInterface, decoded: _Decoded, op: str, args: Tuple[Any, ...]) -> Any:
    """Run one request on the learner and return a picklable answer (never weights, only sources)."""
    if op == "propose":
        key, name, threshold = args
        return _weights_out(learner.mli_propose_weights(), "mli_propose_weights", key, name, threshold)
    if op == "current_weights":
        key, name, threshold = args
        return _weights_out(learner.mli_get_current_weights(), "mli_get_current_weights", key, name, threshold)
    if op == "test":
        return _verdict(learner.mli_test_weights(decoded.get(args[0])))
    if op == "accept":
        learner.mli_accept_weights(decoded.get(args[0]))
        return None
    if op == "current_model":
        return _model_out(learner.mli_get_current_model())
    if op == "pid":
        return os.getpid()
    raise ValueError(f"unknown request {op!r}")


def worker_main(factory: Callable[[], MachineLearningInterface], conn: Any) -> None:
    """Entry point of a worker process: build the learner, then serve requests until closed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it closes us
    _die_with_parent()
    multiprocessing.current_process().daemon = False  # learners may start their own processes
    try:
        learner = factory()
    except BaseException as exc:  # report and leave: the driver decides what a failed start means
        conn.send(("start_failed", describe(exc)))
        return
    conn.send(("ready", os.getpid()))
    decoded = _Decoded()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        op, seq, args = message
        if op == "close":
            return
        try:
            reply = ("ok", seq, handle(learner, decoded, op, args))
        except Exception as exc:  # a learner's fault is an answer, not the end of the worker
            reply = ("refused" if isinstance(exc, ProposalRefused) else "err", seq, describe(exc))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
