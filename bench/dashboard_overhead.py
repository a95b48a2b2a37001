"""Dashboard overhead: does serving the live page slow the experiment's rounds?

The same experiment (digits, 5 sklearn SGD learners, 20 rounds, seed 0, the round journal on as in
``colearn run``) four ways, in paired repeats (each repeat runs all four, in a rotating order):

* ``without``: no page (what ``colearn run`` does);
* ``process, served``: the page served from a child process, as ``colearn run --dashboard`` does, nobody watching;
* ``process, watched``: the same, and one client (another process, like a browser) follows the event stream, so
  the view is rebuilt and sent after every round;
* ``thread, watched``: the page served from a thread of the experiment's own process
  (:class:`~colearn.dashboard.server.DashboardServer`), watched: the design ``--dashboard`` does not use, kept to
  show why (the thread shares the interpreter's lock with the experiment).

Per repeat: the median and the 10th-percentile round time (``RoundRecord.times.total``; the fastest rounds are
the least disturbed by other work on a shared machine), the run's wall time and the CPU time of the experiment's
process (``time.process_time``), and the CPU time the page itself used (its thread's clock, or the
child process's CPU time while it served); then per mode the median over repeats and the paired difference to
``without`` (median, min, max over repeats). All runs of a repeat must give identical results (timings aside).

Run: ``python -m bench.dashboard_overhead [--repeats N]`` (``--quick``: 2 repeats of 8 rounds).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import bench  # noqa: F401  (one BLAS thread per process)
from bench.common import median, parser, report
from colearn.journal import RoundJournal
from colearn.runner import RunConfig, run

MODES = ("without", "process, served", "process, watched", "thread, watched")
CLIENT = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "events", timeout=120) as stream:
    for line in stream:
        if line.startswith(b"event: view"):
            print("connected", flush=True)
"""


def start_page(mode: str, out: Path) -> Any:
    if mode.startswith("process"):
        from colearn.dashboard.process import DashboardProcess

        return DashboardProcess(out, poll_seconds=0.25).start()
    from colearn.dashboard.server import DashboardServer

    return DashboardServer(out, poll_seconds=0.25).start()


def watch(url: str) -> subprocess.Popen:
    """A client process that follows the page's event stream; returns once the first view arrived."""
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url], stdout=subprocess.PIPE, text=True)
    if client.stdout.readline().strip() != "connected":  # bounded by the client's own timeout
        client.kill()
        raise RuntimeError("the watching client did not connect")
    return client


def run_once(config: RunConfig, mode: str, out: Path) -> Dict[str, Any]:
    page = start_page(mode, out) if mode != "without" else None
    client = watch(page.url) if mode.endswith("watched") else None
    thread_clock = time.pthread_getcpuclockid(page.thread.ident) if mode.startswith("thread") else None
    try:
        page_started = time.clock_gettime(thread_clock) if thread_clock is not None else 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        results = run(config, hooks=[RoundJournal(out)])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        page_cpu = time.clock_gettime(thread_clock) - page_started if thread_clock is not None else None
        results.save(out / "results.json")
    finally:
        if client is not None:
            client.terminate()
            client.wait(timeout=10)
        if page is not None:
            page.stop()
    if mode.startswith("process"):
        page_cpu = page.page_cpu_seconds
    totals = sorted(r.times.total for r in results.rounds)
    return {"round": median(totals), "fast": totals[len(totals) // 10], "wall": wall, "cpu": cpu, "page_cpu": page_cpu,
            "results": results.to_json(include_timings=False)}


def view_rebuild_ms(folder: Path, repeats: int = 20) -> float:
    """Median time to read the folder again and rebuild the page's JSON (what a change costs the process)."""
    from colearn.dashboard.source import FolderSource

    times = []
    for _ in range(repeats):
        source = FolderSource(folder)
        started = time.perf_counter()
        source.view_text()
        times.append(time.perf_counter() - started)
    return median(times) * 1e3


def longer_run(folder: Path, out: Path, n_rounds: int) -> Path:
    """A results.json of ``n_rounds`` rounds made by repeating the rounds of the run in ``folder``."""
    from colearn.results import ExperimentResults

    results = ExperimentResults.load(folder / "results.json")
    rounds = [r.model_copy(update={"round_index": k}) for k, r in
              zip(range(n_rounds), results.rounds * (n_rounds // len(results.rounds) + 1))]
    out.mkdir(parents=True, exist_ok=True)
    results.model_copy(update={"rounds": rounds}).save(out / "results.json")
    return out


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--repeats", type=int, default=9, help="paired repeats (default 9; --quick: 2)")
    args = cli.parse_args()
    repeats, n_rounds = (2, 8) if args.quick else (args.repeats, 20)
    config = RunConfig(task="digits", learner="sgd", n_learners=5, n_rounds=n_rounds, seed=0)
    run(config.model_copy(update={"n_rounds": 1}))  # warm-up: imports, data loading
    runs: Dict[str, List[Dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = MODES[repeat % len(MODES):] + MODES[:repeat % len(MODES)]
            for mode in order:
                runs[mode].append(run_once(config, mode, Path(tmp) / f"{mode}-{repeat}"))
            same = {runs[mode][-1]["results"] for mode in MODES}
            assert len(same) == 1, f"repeat {repeat}: the modes gave different results with one seed"
            print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(
                f"{m} {runs[m][-1]['round'] * 1e3:.1f} ms/round" for m in MODES), flush=True)
        last = Path(tmp) / f"without-{repeats - 1}"
        rebuild = {f"{n_rounds} rounds x 5 learners": view_rebuild_ms(last)}
        for size in (100, 500):
            rebuild[f"{size} rounds x 5 learners"] = view_rebuild_ms(longer_run(last, Path(tmp) / f"long-{size}", size))
    rows = []
    for mode in MODES:
        rounds = [r["round"] for r in runs[mode]]
        walls = [r["wall"] for r in runs[mode]]
        diffs = [r["round"] - b["round"] for r, b in zip(runs[mode], runs["without"])]
        wall_diffs = [r["wall"] - b["wall"] for r, b in zip(runs[mode], runs["without"])]
        cpu_diffs = [r["cpu"] - b["cpu"] for r, b in zip(runs[mode], runs["without"])]
        fast_diffs = [r["fast"] - b["fast"] for r, b in zip(runs[mode], runs["without"])]
        rows.append({"mode": mode, "repeats": repeats, "rounds": n_rounds,
                     "round_ms": median(rounds) * 1e3, "run_s": median(walls),
                     "round_diff_ms": median(diffs) * 1e3, "round_diff_min_ms": min(diffs) * 1e3,
                     "round_diff_max_ms": max(diffs) * 1e3, "round_diff_pct": 100 * median(diffs) / median(
                         [b["round"] for b in runs["without"]]),
                     "fast_round_ms": median([r["fast"] for r in runs[mode]]) * 1e3,
                     "fast_diff_ms": median(fast_diffs) * 1e3,
                     "fast_diff_min_ms": min(fast_diffs) * 1e3, "fast_diff_max_ms": max(fast_diffs) * 1e3,
                     "run_diff_s": median(wall_diffs), "cpu_s": median([r["cpu"] for r in runs[mode]]),
                     "cpu_diff_ms": median(cpu_diffs) * 1e3,
                     "page_cpu_ms_per_round": None if mode == "without" else
                     median([r["page_cpu"] for r in runs[mode]]) * 1e3 / n_rounds})
    report("dashboard_overhead", "round time with and without the dashboard (digits, 5 x sgd, seed 0)",
           ["mode", "repeats", "round_ms", "round_diff_ms", "round_diff_min_ms", "round_diff_max_ms", "fast_round_ms",
            "fast_diff_ms", "fast_diff_min_ms", "fast_diff_max_ms", "run_s", "cpu_diff_ms", "page_cpu_ms_per_round"],
           rows, quick=args.quick, out=args.out,
           notes=["round_diff_* = paired difference to 'without' (same repeat), median/min/max over repeats",
                  "fast_round = the run's 10th-percentile round time (its fastest rounds: least disturbed by other "
                  "work on the machine); fast_diff_* = its paired difference",
                  "page_cpu = CPU time the page used (uvicorn, polling, rebuilding and sending the view) per round: "
                  "its thread's clock during the run, or the child process's CPU time while it served",
                  "cpu = CPU time of the experiment's process (with a thread, the page's CPU is part of it; the "
                  "watching client is another process); cpu_diff = paired difference to 'without'",
                  "all modes of a repeat gave identical results.json (timings aside)",
                  "view rebuild after a change (ms, median): " + ", ".join(
                      f"{k}: {v:.1f}" for k, v in rebuild.items())],
           extra={"view_rebuild_ms": rebuild})


if __name__ == "__main__":
    main()
