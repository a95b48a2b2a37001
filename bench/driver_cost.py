"""Driver cost: rounds per second with trivial "+1" learners, and the driver's own time per round.

Bookkeeping per round = round time - time spent inside backend calls (measured by wrapping the
backend), i.e. selection, tally, records and hooks. Run: ``python -m bench.driver_cost [--quick]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import bench  # noqa: F401
from bench.common import TimingBackend, make_backend, median, parser, report
from colearn.experiment import Experiment
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn.protocol import ProtocolConfig


class PlusOne(MachineLearningInterface):
    """Weights are one integer; proposing adds one; everyone approves."""

    def __init__(self) -> None:
        self.value = 0

    def mli_propose_weights(self) -> Weights:
        return Weights(weights=self.value + 1)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        return ProposedWeights(weights=weights, vote_score=float(weights.weights),
                               test_score=float(weights.weights), vote=True)

    def mli_accept_weights(self, weights: Weights) -> None:
        self.value = weights.weights

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.value)


@dataclass(frozen=True)
class PlusOneFactory:
    def __call__(self) -> PlusOne:
        return PlusOne()


def measure(kind: str, n: int, rounds: int) -> Dict[str, Any]:
    timing = TimingBackend(make_backend(kind, [PlusOneFactory() for _ in range(n)]))
    with timing:
        experiment = Experiment(timing, ProtocolConfig())
        experiment.run(3)  # warm-up
        totals, bookkeeping = [], []
        for _ in range(rounds):
            timing.reset()
            record = experiment.run_round()
            totals.append(record.times.total)
            bookkeeping.append(max(0.0, record.times.total - timing.backend_seconds))
    per_round = median(totals)
    return {"backend": kind, "N": n, "rounds/s": 1.0 / per_round, "round ms": per_round * 1e3,
            "bookkeeping ms": median(bookkeeping) * 1e3}


def main() -> None:
    opts = parser(__doc__.splitlines()[0]).parse_args()
    ns = [2, 5] if opts.quick else [2, 5, 10, 20]
    rounds = 50 if opts.quick else 500
    rows: List[Dict[str, Any]] = []
    for kind in ("local", "processes"):
        for n in ns:
            rows.append(measure(kind, n, rounds if kind == "local" else rounds // 5))
    report("driver_cost", "Driver cost with +1 learners", list(rows[0]), rows, quick=opts.quick, out=opts.out,
           notes=["bookkeeping = round time - time inside backend calls (median)",
                  "processes: each round is 1 propose + N-1 tests + N accepts + 1 self-test over pipes"])


if __name__ == "__main__":
    main()
