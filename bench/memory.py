"""Memory: peak RSS of N learners holding 10^7 float32 parameters, in-process vs processes vs ray.

Each configuration runs in a fresh Python process (so peaks do not mix); it runs a few rounds and
reports VmHWM (peak resident set) of the driver and of every learner process. Shared-memory pages
a process has mapped count in its RSS, so the sum over processes over-counts them.
Run: ``python -m bench.memory [--quick]``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import bench  # noqa: F401
from bench.common import has_ray, parser, report


def peak_rss_mib(pid: str = "self") -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child(kind: str, n: int, n_params: int, rounds: int) -> Dict[str, Any]:
    from bench.common import burn_rate, cost_factories, make_backend
    from colearn.experiment import Experiment
    from colearn.protocol import ProtocolConfig

    backend = make_backend(kind, cost_factories(n, n_params, 0.005, 0.01, burn_rate(repeats=2)))
    with backend:
        Experiment(backend, ProtocolConfig()).run(rounds)
        if kind == "processes":
            pids = backend.worker_pids
        elif kind == "ray":
            pids = backend.actor_pids()
        else:
            pids = []
        learners = [peak_rss_mib(str(pid)) for pid in pids if pid is not None]
    driver = peak_rss_mib()
    return {"backend": kind, "N": n, "driver MiB": driver,
            "max learner MiB": max(learners) if learners else None,
            "total MiB": (driver or 0.0) + sum(v for v in learners if v is not None)}


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--child", nargs=4, metavar=("KIND", "N", "PARAMS", "ROUNDS"), help=argparse_hidden())
    opts = args.parse_args()
    if opts.child:
        kind, n, n_params, rounds = opts.child
        print(json.dumps(child(kind, int(n), int(n_params), int(rounds))))
        return
    n_params = 10**6 if opts.quick else 10**7
    ns = [2, 5] if opts.quick else [2, 5, 10]
    rounds = 2 if opts.quick else 5
    rows: List[Dict[str, Any]] = []
    notes = [f"model size {n_params:.0e} float32 ({n_params * 4 / 2**20:.0f} MiB); {rounds} rounds",
             "total = driver + every learner process (shared-memory pages are counted by each process)"]
    kinds = ["local", "processes"] + (["ray"] if has_ray() else [])
    if not has_ray():
        notes.append("ray rows skipped: Ray is not installed")
    for kind in kinds:
        for n in ns:
            done = subprocess.run([sys.executable, "-m", "bench.memory", "--child", kind, str(n), str(n_params),
                                   str(rounds)], capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                notes.append(f"{kind} N={n} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    report("memory", "Peak RSS", list(rows[0]) if rows else [], rows, quick=opts.quick, out=opts.out,
           notes=notes, extra={"n_params": n_params})


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
