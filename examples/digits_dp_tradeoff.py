"""The accuracy / privacy trade-off of differentially private collective learning, with PyTorch (opacus)
or Keras 3 (colearn_keras' DP-SGD).

Five learners share the embedded digits. Every setting trains the same MLP with DP-SGD (per-example
clipping, Gaussian noise, Poisson sampling); each learner stops proposing once one more proposal would
take its spent epsilon past the target, and the experiment then stops when nobody can propose.

    python examples/digits_dp_tradeoff.py --framework torch            # no DP, and DP at epsilon <= 3, 6, 10
    python examples/digits_dp_tradeoff.py --framework keras --plot dp.png
    python examples/digits_dp_tradeoff.py --fast                       # 2 settings, 4 rounds (what the tests run)

Per round it prints the mean test accuracy of the models the learners hold and the mean epsilon spent;
at the end, a table per setting and every learner's spent budget.
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from colearn.data.splits import split_learner_data
from colearn.data.tasks import load_task
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig
from colearn.results import ExperimentResults

# (label, dp settings or None); a smaller target epsilon needs more noise to allow any training at all
SETTINGS: List[Tuple[str, Optional[Dict[str, float]]]] = [
    ("no DP", None),
    ("eps<=3", {"target_epsilon": 3.0, "noise_multiplier": 2.0, "max_grad_norm": 1.0, "delta": 1e-5}),
    ("eps<=6", {"target_epsilon": 6.0, "noise_multiplier": 1.3, "max_grad_norm": 1.0, "delta": 1e-5}),
    ("eps<=10", {"target_epsilon": 10.0, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5}),
]


LEARNING_RATES = {"torch": 0.02, "keras": 0.01}


def load_factory(framework: str):
    """The framework's MLP factory; the framework is imported only here."""
    if framework == "torch":
        from colearn_pytorch.factories import make_mlp_learner
    else:
        from colearn_keras.factories import make_mlp_learner
    return make_mlp_learner


def prepare(args: argparse.Namespace) -> None:
    if args.framework == "torch":
        import torch

        torch.set_num_threads(args.threads)
    else:
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # each learner traces its functions once; TensorFlow warns about that


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="at most this many rounds per setting")
    parser.add_argument("--learners", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--framework", choices=("torch", "keras"), default="torch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (torch only)")
    parser.add_argument("--plot", default=None, help="save accuracy against spent epsilon to this image")
    parser.add_argument("--fast", action="store_true", help="2 settings, 4 rounds")
    return parser.parse_args(argv)


def mean_spent(record) -> float:
    spent = [b.consumed_epsilon for b in record.dp_budgets if b is not None]
    return float(np.mean(spent)) if spent else 0.0


def run_setting(label: str, dp: Optional[Dict[str, float]], args: argparse.Namespace) -> ExperimentResults:
    datas = split_learner_data(load_task("digits"), args.learners, seed=args.seed)
    params = {"epochs": 1, "lr": LEARNING_RATES[args.framework]}
    make_mlp_learner = load_factory(args.framework)
    if args.fast:
        params["batches_per_proposal"] = 2
    learners = [make_mlp_learner(data, seed=args.seed * 1000 + i, dp=dp, **params) for i, data in enumerate(datas)]
    experiment = Experiment(learners, ProtocolConfig(seed=args.seed))
    print(f"== {label}")
    for round_index in range(4 if args.fast else args.rounds):
        record = experiment.run_round(round_index)
        accuracy = np.mean([s for s in record.held_test_scores if s is not None])
        status = record.proposer_error or ("accepted" if record.accepted else "rejected")
        print(f"  round {round_index:2d}: proposer {record.proposer}, {status}, "
              f"accuracy {accuracy:.3f}, mean epsilon spent {mean_spent(record):.2f}")
        if record.proposer is None:  # every learner's budget is spent
            break
    return experiment.results


def summarise(label: str, results: ExperimentResults) -> str:
    last = results.rounds[-1]
    accuracy = np.mean([s for s in last.held_test_scores if s is not None])
    budgets = ", ".join(f"{b.consumed_epsilon:.2f}/{b.target_epsilon:g}" for b in last.dp_budgets if b is not None)
    stopped = sorted({r.proposer for r in results.rounds if r.proposer_error == "DP_BUDGET_EXCEEDED"})
    return (f"{label:8s} accuracy {accuracy:.3f} after {len(results.rounds)} rounds; "
            f"spent/target epsilon per learner: {budgets or 'n/a'}; learners that stopped proposing: {stopped}")


def plot(all_results: Dict[str, ExperimentResults], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for label, results in all_results.items():
        epsilons = [mean_spent(r) for r in results.rounds]
        accuracy = [np.mean([s for s in r.held_test_scores if s is not None]) for r in results.rounds]
        if label == "no DP":
            axes.axhline(accuracy[-1], color="grey", linestyle="--", label="no DP (final)")
        else:
            axes.plot(epsilons, accuracy, marker=".", label=label)
    axes.set_xlabel("mean epsilon spent per learner")
    axes.set_ylabel("mean test accuracy of held models")
    axes.legend()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    print(f"saved {path}")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, ExperimentResults]:
    args = parse_args(argv)
    prepare(args)
    started = time.perf_counter()
    settings = [SETTINGS[0], SETTINGS[-1]] if args.fast else SETTINGS
    all_results = {label: run_setting(label, dp, args) for label, dp in settings}
    print("\nsummary")
    for label, results in all_results.items():
        print("  " + summarise(label, results))
    if args.plot:
        plot(all_results, args.plot)
    print(f"{time.perf_counter() - started:.1f} s")
    return all_results


if __name__ == "__main__":
    main()
