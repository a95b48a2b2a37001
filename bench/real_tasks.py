"""Real tasks: digits with the sklearn SGD learner and the PyTorch MLP, N = 5, on each backend.

Per backend: median round time, its phase split (propose / vote / accept), the driver's bookkeeping
share (round time outside backend calls), and whether results.json equals the local run's (timings,
backend name and versions aside). Run: ``python -m bench.real_tasks [--quick]``.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Dict, List, Optional

import bench  # noqa: F401
from bench.common import TimingBackend, comparable, has_ray, make_backend, median, parser, report
from colearn.experiment import Experiment
from colearn.runner import LearnerFactory, RunConfig

LEARNERS = {"sgd": "colearn_other.sklearn_learner", "torch-mlp": "colearn_pytorch.factories"}


def measure(config: RunConfig, kind: str) -> Dict[str, Any]:
    factories = [LearnerFactory(config, i) for i in range(config.n_learners)]
    timing = TimingBackend(make_backend(kind, factories))
    run_config = config.model_dump(mode="json", exclude={"backend", "backend_options"})
    with timing:
        experiment = Experiment(timing, config.protocol(), run_config=run_config)
        experiment.evaluate_initial()
        shares = []
        for _ in range(config.n_rounds):
            timing.reset()
            record = experiment.run_round()
            shares.append(max(0.0, record.times.total - timing.backend_seconds) / record.times.total)
        results = experiment.results
    times = [r.times for r in results.rounds]
    return {"results": results,
            "row": {"learner": config.learner, "backend": kind, "round ms": median([t.total for t in times]) * 1e3,
                    "propose ms": median([t.propose for t in times]) * 1e3,
                    "vote ms": median([t.vote for t in times]) * 1e3,
                    "accept ms": median([t.accept for t in times if t.accept > 0] or [0.0]) * 1e3,
                    "bookkeeping %": median(shares) * 100, "accepted": results.n_accepted,
                    "final test": results.final_mean_test_score}}


def main() -> None:
    opts = parser(__doc__.splitlines()[0]).parse_args()
    rounds = 3 if opts.quick else 20
    backends = ["local", "processes"] + (["ray"] if has_ray() else [])
    rows: List[Dict[str, Any]] = []
    notes = [f"digits, N=5, {rounds} rounds, seed 0; round times are medians",
             "bookkeeping % = share of the round spent outside backend calls (median)"]
    if not has_ray():
        notes.append("ray rows skipped: Ray is not installed")
    for learner, module in LEARNERS.items():
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            notes.append(f"{learner} rows skipped: {module} is not available")
            continue
        config = RunConfig(task="digits", learner=learner, n_learners=5, n_rounds=rounds, seed=0)
        reference: Optional[Dict[str, Any]] = None
        for kind in backends:
            try:
                measured = measure(config, kind)
            except Exception as exc:  # report the row as failed, keep benchmarking the others
                notes.append(f"{learner} on {kind} failed: {type(exc).__name__}: {exc}")
                continue
            same = comparable(measured["results"])
            reference = reference if reference is not None else same
            rows.append({**measured["row"], "same as local": same == reference})
            print(rows[-1], flush=True)
    report("real_tasks", "Digits, N=5: round time and phases per backend", list(rows[0]) if rows else [],
           rows, quick=opts.quick, out=opts.out, notes=notes)


if __name__ == "__main__":
    main()
