"""Dashboard overhead: does serving the live page slow the experiment's rounds?

The same experiment (digits, 5 sklearn SGD learners, 20 rounds, seed 0, the round journal on as in
``colearn run``) three ways, in paired repeats (each repeat runs all three, in a rotating order):

* ``without``: no page (what ``colearn run`` does);
* ``served``: the page served from the same process (``colearn run --dashboard``), nobody watching;
* ``watched``: served, and one client (another process, like a browser) follows the event stream, so the
  view is rebuilt and sent after every round.

Per repeat: the median round time (``RoundRecord.times.total``), the run's wall time and the CPU time of the
process (``time.process_time``: the learners and the page's thread; less disturbed than wall time by other work
on the machine), and the CPU time of the page's own thread (``time.pthread_getcpuclockid``): what the page adds
to the process, undisturbed by other load; then per mode the median over repeats and the paired difference to ``without`` (median, min, max over repeats). The three runs of a repeat
must give identical results (timings aside): same seed, same rounds.

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

MODES = ("without", "served", "watched")
CLIENT = """
import sys, urllib.request
count = 0
with urllib.request.urlopen(sys.argv[1] + "events", timeout=120) as stream:
    for line in stream:
        count += line.startswith(b"event: view")
"""


def run_once(config: RunConfig, mode: str, out: Path) -> Dict[str, Any]:
    server: Optional[Any] = None
    client: Optional[subprocess.Popen] = None
    if mode != "without":
        from colearn.dashboard.server import DashboardServer

        server = DashboardServer(out, poll_seconds=0.25).start()
        if mode == "watched":
            client = subprocess.Popen([sys.executable, "-c", CLIENT, server.url])
            deadline = time.monotonic() + 10
            while server.hub.listeners == 0 and time.monotonic() < deadline:  # the stream is open
                time.sleep(0.01)
            if server.hub.listeners == 0:
                raise RuntimeError("the watching client did not connect within 10 s")
    page_clock = time.pthread_getcpuclockid(server.thread.ident) if server is not None else None
    try:
        page_started = time.clock_gettime(page_clock) if page_clock is not None else 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        results = run(config, hooks=[RoundJournal(out)])
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        page_cpu = time.clock_gettime(page_clock) - page_started if page_clock is not None else None
        results.save(out / "results.json")
    finally:
        if client is not None:
            client.terminate()
            client.wait(timeout=10)
        if server is not None:
            server.stop()
    return {"round": median([r.times.total for r in results.rounds]), "wall": wall, "cpu": cpu, "page_cpu": page_cpu,
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
            order = MODES[repeat % 3:] + MODES[:repeat % 3]
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
        rows.append({"mode": mode, "repeats": repeats, "rounds": n_rounds,
                     "round_ms": median(rounds) * 1e3, "run_s": median(walls),
                     "round_diff_ms": median(diffs) * 1e3, "round_diff_min_ms": min(diffs) * 1e3,
                     "round_diff_max_ms": max(diffs) * 1e3, "round_diff_pct": 100 * median(diffs) / median(
                         [b["round"] for b in runs["without"]]),
                     "run_diff_s": median(wall_diffs), "cpu_s": median([r["cpu"] for r in runs[mode]]),
                     "cpu_diff_ms": median(cpu_diffs) * 1e3,
                     "page_cpu_ms_per_round": None if mode == "without" else
                     median([r["page_cpu"] for r in runs[mode]]) * 1e3 / n_rounds})
    report("dashboard_overhead", "round time with and without the dashboard (digits, 5 x sgd, seed 0)",
           ["mode", "repeats", "rounds", "round_ms", "round_diff_ms", "round_diff_min_ms", "round_diff_max_ms",
            "round_diff_pct", "run_s", "run_diff_s", "cpu_s", "cpu_diff_ms", "page_cpu_ms_per_round"], rows, quick=args.quick, out=args.out,
           notes=["round_diff_* = paired difference to 'without' (same repeat), median/min/max over repeats",
                  "page_cpu = CPU time of the page's own thread (uvicorn, polling, rebuilding and sending the view) "
                  "during the run, per round: the work the page adds to the process, measured without noise",
                  "cpu = CPU time of the experiment's process (learners run in it; the page's thread too; the "
                  "watching client is another process), cpu_diff = paired difference: the page's own CPU cost",
                  "all modes of a repeat gave identical results.json (timings aside)",
                  "view rebuild after a change (ms, median): " + ", ".join(
                      f"{k}: {v:.1f}" for k, v in rebuild.items())],
           extra={"view_rebuild_ms": rebuild})


if __name__ == "__main__":
    main()
