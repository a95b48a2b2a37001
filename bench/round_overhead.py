"""Round overhead: how close a round comes to its physical limit, and what colearn 0.2.8 would take.

Learners do fixed numpy work (``--propose-seconds``, ``--test-seconds``) and hold 10^3..10^7 float32
parameters; N in {2, 5, 10, 20}. Per configuration (medians of the measured rounds):

* ``limit`` = T_propose + max(max_i T_test_i, sum_i T_test_i / cores), from the learners' own compute
  times in the process-backend run itself;
* ``processes`` round time and its ratio to the limit (protocol with ``evaluate_proposer=False``: the
  limit formula counts the voters' tests only);
* ``local`` (in-process, default protocol, every proposal accepted) and the ``serial 0.2.8`` driver
  (every learner incl. the proposer tests one after another; every learner re-scores on accept),
  and their ratio.

Run: ``python -m bench.round_overhead`` (``--quick`` for a small grid).
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List

import bench  # noqa: F401  (one BLAS thread per process)
from bench.common import (TimingBackend, burn_rate, cost_factories, make_backend, median, parser, report,
                          serial_round_0_2_8)
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig

CORES = os.cpu_count() or 1


def measure_backend(kind: str, factories: list, rounds: int, protocol: ProtocolConfig) -> Dict[str, Any]:
    timing = TimingBackend(make_backend(kind, factories))
    with timing:
        experiment = Experiment(timing, protocol)
        experiment.run_round()  # warm-up (first touches, imports), not counted
        totals, limits, ratios = [], [], []
        for _ in range(rounds):
            timing.reset()
            record = experiment.run_round()
            tests = timing.test_seconds
            limit = (timing.propose_seconds or 0.0) + max(max(tests, default=0.0), sum(tests) / CORES)
            totals.append(record.times.total)
            limits.append(limit)
            ratios.append(record.times.total / limit if limit > 0 else None)
            assert record.accepted, record
    return {"round": median(totals), "limit": median(limits), "ratio": median(ratios)}


def measure_serial(factories: list, rounds: int) -> float:
    learners = [factory() for factory in factories]
    serial_round_0_2_8(learners, 0)  # warm-up
    times = []
    for r in range(rounds):
        started = time.perf_counter()
        serial_round_0_2_8(learners, (r + 1) % len(learners))
        times.append(time.perf_counter() - started)
    return median(times)


def main() -> None:
    args = parser(__doc__.splitlines()[0])
    args.add_argument("--propose-seconds", type=float, default=0.01)
    args.add_argument("--test-seconds", type=float, default=0.05)
    args.add_argument("--rounds", type=int, default=None)
    opts = args.parse_args()
    sizes = [10**3, 10**6] if opts.quick else [10**3, 10**4, 10**5, 10**6, 10**7]
    ns = [2, 5] if opts.quick else [2, 5, 10, 20]
    rounds = opts.rounds or (3 if opts.quick else 7)
    rate = burn_rate()
    rows: List[Dict[str, Any]] = []
    for n_params in sizes:
        for n in ns:
            factories = cost_factories(n, n_params, opts.propose_seconds, opts.test_seconds, rate)
            processes = measure_backend("processes", factories, rounds, ProtocolConfig(evaluate_proposer=False))
            local = measure_backend("local", factories, rounds, ProtocolConfig())
            serial = measure_serial(factories, rounds)
            rows.append({"params": f"1e{len(str(n_params)) - 1}", "N": n, "limit s": processes["limit"],
                         "processes s": processes["round"], "processes/limit": processes["ratio"],
                         "local s": local["round"], "serial 0.2.8 s": serial,
                         "local/serial": local["round"] / serial if serial else None})
            print(rows[-1], flush=True)
    report("round_overhead", "Round time vs the limit and vs colearn 0.2.8 semantics",
           list(rows[0]), rows, quick=opts.quick, out=opts.out,
           notes=[f"T_propose={opts.propose_seconds}s, T_test={opts.test_seconds}s of numpy work per call; "
                  f"{rounds} measured rounds after 1 warm-up; medians",
                  "processes: evaluate_proposer=False (the limit counts voters' tests only); local: default protocol",
                  "must show: processes/limit <= 1.15 at N=5; local/serial <= 0.55"],
           extra={"burn_rate_per_s": rate, "propose_seconds": opts.propose_seconds,
                  "test_seconds": opts.test_seconds, "rounds": rounds})


if __name__ == "__main__":
    main()
