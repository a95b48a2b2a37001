"""Shared pieces of the benchmarks: a learner with controlled cost, a timing backend wrapper, the
colearn 0.2.8-semantics serial driver, machine info, backends by name, and table/JSON output."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from colearn.backends.base import Backend, Failure, Outcome
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights

RESULTS = Path(__file__).resolve().parent / "results"
_BURN = np.linspace(0.0, 1.0, 20_000)


def burn(iterations: int) -> float:
    """Deterministic single-threaded numpy work: ``iterations`` elementwise passes over 20k floats."""
    x = _BURN.copy()
    for _ in range(iterations):
        x = np.sin(x) + 0.5
    return float(x[0])


def burn_rate(repeats: int = 5, iterations: int = 200) -> float:
    """Iterations of :func:`burn` per second on this machine (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        burn(iterations)
        best = min(best, time.perf_counter() - started)
    return iterations / best


class CostLearner(MachineLearningInterface):
    """A learner whose propose and test do a fixed amount of numpy work and touch all ``n_params``
    float32 weights once; it always approves (every proposal accepted). Its own compute times travel
    with its answers (``propose_seconds`` in the weights, ``test_seconds`` in evaluation_results).

    The times are the thread's CPU time (``time.thread_time``): the work is single-threaded, so this is
    what the call costs on a core of its own, whether or not other learners share the cores meanwhile.
    Wall-clock times taken inside concurrently running workers would include the waiting and inflate
    the limit."""

    def __init__(self, index: int, n_params: int, propose_iterations: int, test_iterations: int):
        self.index, self.propose_iterations, self.test_iterations = index, propose_iterations, test_iterations
        self.w = np.zeros(n_params, dtype=np.float32)
        self.step = np.float32(1.0 + index)

    def mli_propose_weights(self) -> Weights:
        started = time.thread_time()
        burn(self.propose_iterations)
        w = self.w + self.step
        return Weights(weights={"w": w, "propose_seconds": time.thread_time() - started})

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        started = time.thread_time()
        burn(self.test_iterations)
        score = float(np.sum(weights.weights["w"], dtype=np.float64))
        return ProposedWeights(weights=weights, vote_score=score, test_score=score, vote=True,
                               evaluation_results={"test_seconds": time.thread_time() - started})

    def mli_accept_weights(self, weights: Weights) -> None:
        self.w = weights.weights["w"]

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={"w": self.w, "propose_seconds": 0.0})


@dataclass(frozen=True)
class CostFactory:
    """Picklable factory of :class:`CostLearner` ``index``."""

    index: int
    n_params: int
    propose_iterations: int
    test_iterations: int

    def __call__(self) -> CostLearner:
        return CostLearner(self.index, self.n_params, self.propose_iterations, self.test_iterations)


def cost_factories(n: int, n_params: int, propose_seconds: float, test_seconds: float,
                   rate: float) -> List[CostFactory]:
    return [CostFactory(i, n_params, max(0, round(propose_seconds * rate)), max(0, round(test_seconds * rate)))
            for i in range(n)]


class TimingBackend(Backend):
    """Delegates to a backend and records, per round, the time spent inside backend calls and the
    learners' own compute times that come back with the answers."""

    def __init__(self, inner: Backend):
        self.inner, self.name = inner, inner.name
        self.backend_seconds = 0.0
        self.propose_seconds: Optional[float] = None
        self.test_seconds: List[float] = []

    def reset(self) -> None:
        self.backend_seconds, self.propose_seconds, self.test_seconds = 0.0, None, []

    def _timed(self, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.backend_seconds += time.perf_counter() - started

    @property
    def n_learners(self) -> int:
        return self.inner.n_learners

    def propose(self, learner: int) -> Outcome[Weights]:
        proposal = self._timed(lambda: self.inner.propose(learner))
        if isinstance(proposal, Weights) and isinstance(proposal.weights, dict):
            self.propose_seconds = float(proposal.weights.get("propose_seconds", 0.0))
        return proposal

    def test(self, weights: Weights, learners: Sequence[int]) -> Mapping[int, Outcome[ProposedWeights]]:
        answers = self._timed(lambda: self.inner.test(weights, learners))
        for answer in answers.values():
            if isinstance(answer, ProposedWeights) and answer.evaluation_results:
                self.test_seconds.append(float(answer.evaluation_results.get("test_seconds", 0.0)))
        return answers

    def accept(self, weights: Weights, learners: Sequence[int]) -> Mapping[int, Outcome[None]]:
        return self._timed(lambda: self.inner.accept(weights, learners))

    def current_weights(self, learner: int) -> Outcome[Weights]:
        return self._timed(lambda: self.inner.current_weights(learner))

    def close(self) -> None:
        self.inner.close()


def serial_round_0_2_8(learners: Sequence[MachineLearningInterface], proposer: int, threshold: float = 0.5) -> bool:
    """One round with colearn 0.2.8's semantics: every learner, proposer included, tests the proposal
    one after another; if accepted, every learner accepts and re-evaluates its vote set."""
    proposal = learners[proposer].mli_propose_weights()
    votes = [learner.mli_test_weights(proposal).vote for learner in learners]
    approvals = sum(1 for i, vote in enumerate(votes) if vote and i != proposer)
    accepted = approvals >= (len(learners) - 1) * threshold
    if accepted:
        for learner in learners:
            learner.mli_accept_weights(proposal)
            learner.mli_test_weights(proposal)  # 0.2.8 re-scored the vote set on accept
    return accepted


def make_backend(kind: str, factories: Sequence[Callable[[], MachineLearningInterface]], **options: Any) -> Backend:
    """``local``, ``processes`` or ``ray`` (a local Ray with this machine's cores)."""
    if kind == "local":
        from colearn.backends.local import LocalBackend

        return LocalBackend([factory() for factory in factories])
    if kind == "processes":
        from colearn.backends.processes import ProcessBackend

        return ProcessBackend(factories, timeout=options.pop("timeout", 600), **options)
    from colearn.backends.ray_backend import RayBackend

    return RayBackend(factories, timeout=options.pop("timeout", 600),
                      ray_init_options={"num_cpus": os.cpu_count(), "log_to_driver": False}, **options)


def has_ray() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> Dict[str, Any]:
    """nproc, CPU model, RAM and versions: printed with every table and stored in every JSON."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        ram = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": ram, "python": platform.python_version(),
            "numpy": np.__version__, "load_avg_1min_at_start": load}


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small grid, to check the script works")
    p.add_argument("--out", type=Path, default=None, help="JSON output path (default bench/results/<name>.json)")
    return p


def report(name: str, title: str, columns: Sequence[str], rows: List[Dict[str, Any]], *, quick: bool,
           notes: Sequence[str] = (), extra: Optional[Dict[str, Any]] = None, out: Optional[Path] = None) -> Path:
    """Print a rich table (with the machine) and write the JSON next to it; return the JSON path."""
    from rich.console import Console
    from rich.table import Table

    info = machine()
    table = Table(title=f"{title}{' (quick)' if quick else ''}")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*[_fmt(row.get(column)) for column in columns])
    console = Console(width=160)
    console.print(table)
    console.print(f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram_gib']} GiB RAM, "
                  f"load {info['load_avg_1min_at_start']}")
    for note in notes:
        console.print(f"note: {note}")
    path = out or RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "quick": quick, "machine": info, "notes": list(notes),
                                "rows": rows, **(extra or {})}, indent=2))
    console.print(f"wrote {path}")
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def is_failure(value: Any) -> bool:
    return isinstance(value, Failure)


def comparable(results: Any) -> Dict[str, Any]:
    """results.json without timings, backend name and versions: equal across backends for one seed."""
    data = json.loads(results.to_json(include_timings=False))
    for key in ("backend", "versions"):
        data.pop(key, None)
    return data
