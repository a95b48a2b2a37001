"""Scale: rounds per second and round time as N grows to 100 light learners, on processes and ray.

Light learners: 10^3 float32 parameters, 2 ms of numpy work per propose and per test.
Run: ``python -m bench.scale [--quick]``.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

import bench  # noqa: F401
from bench.common import burn_rate, cost_factories, has_ray, make_backend, median, parser, report
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig


def measure(kind: str, n: int, rounds: int, rate: float) -> Dict[str, Any]:
    started = time.perf_counter()
    backend = make_backend(kind, cost_factories(n, 10**3, 0.002, 0.002, rate))
    startup = time.perf_counter() - started
    with backend:
        experiment = Experiment(backend, ProtocolConfig())
        experiment.run(2)  # warm-up
        totals = [experiment.run_round().times.total for _ in range(rounds)]
    per_round = median(totals)
    return {"backend": kind, "N": n, "startup s": startup, "round ms": per_round * 1e3,
            "rounds/s": 1.0 / per_round, "ms per learner": per_round * 1e3 / n}


def main() -> None:
    opts = parser(__doc__.splitlines()[0]).parse_args()
    ns = [5, 10] if opts.quick else [10, 25, 50, 100]
    rounds = 5 if opts.quick else 20
    rate = burn_rate()
    kinds = ["processes"] + (["ray"] if has_ray() else [])
    notes = [f"10^3 params, 2 ms propose/test work, {rounds} rounds after 2 warm-up rounds; medians"]
    if not has_ray():
        notes.append("ray rows skipped: Ray is not installed")
    rows: List[Dict[str, Any]] = []
    for kind in kinds:
        for n in ns:
            rows.append(measure(kind, n, rounds, rate))
            print(rows[-1], flush=True)
    report("scale", "Round cost as N grows", list(rows[0]), rows, quick=opts.quick, out=opts.out, notes=notes)


if __name__ == "__main__":
    main()
