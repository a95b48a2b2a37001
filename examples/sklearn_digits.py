"""Collective learning with scikit-learn on the embedded digits: 5 learners, logistic regression by SGD.

    python examples/sklearn_digits.py                                  # 5 IID learners, 20 rounds
    python examples/sklearn_digits.py --partition dirichlet --alpha 0.3 --baseline
    python examples/sklearn_digits.py --learner sklearn-mlp --plots out/
    python examples/sklearn_digits.py --fast                           # 3 rounds (what the tests run)

Each round one learner trains a copy of the shared model on its private data and proposes it; the
others score it on their private vote sets and vote; a majority adopts it. Prints every round and the
final mean test accuracy of the models the learners hold. ``--baseline`` also trains every learner
alone on its own share (as many proposals as the collective made) and prints both side by side.
Nothing is downloaded: the digits ship with scikit-learn.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Sequence

import numpy as np

from colearn.data import load_task, split_learner_data
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig
from colearn.registry import make_learner
from colearn.results import ExperimentResults
from colearn.runner import learner_seed
from colearn.baseline import format_comparison, pooled_test_score, train_alone_baseline


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learner", default="sgd", choices=["sgd", "sklearn-mlp", "random-forest"])
    parser.add_argument("--learners", type=int, default=5, help="number of learners")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--partition", default="iid", choices=["iid", "dirichlet", "shards"])
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (smaller: more skewed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also train each learner alone and compare")
    parser.add_argument("--plots", metavar="DIR", help="save score and vote-history plots (PNG) into DIR")
    parser.add_argument("--fast", action="store_true", default=bool(os.environ.get("COLEARN_FAST")),
                        help="3 rounds and one epoch per proposal (also: COLEARN_FAST=1)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> ExperimentResults:
    args = parse_args(argv)
    started = time.perf_counter()
    datas = split_learner_data(load_task("digits"), args.learners, partition=args.partition, alpha=args.alpha,
                               seed=args.seed)
    params = {"epochs_per_proposal": 1} if args.fast and args.learner != "random-forest" else {}
    rounds = 3 if args.fast else args.rounds
    learners = [make_learner(args.learner, data, seed=learner_seed(args.seed, i), **params)
                for i, data in enumerate(datas)]

    def report(record) -> None:
        votes = "".join({True: "+", False: "-", None: "."}[v] if i != record.proposer else "P"
                        for i, v in enumerate(record.votes))
        held = [s for s in record.held_test_scores if s is not None]
        print(f"round {record.round_index:2d}  votes {votes}  {'accepted' if record.accepted else 'rejected'}  "
              f"mean test accuracy {np.mean(held):.3f}")

    results = Experiment(learners, ProtocolConfig(seed=args.seed), hooks=[report]).run(rounds)
    print(f"{args.learner} on digits, {args.learners} {args.partition} learners: {rounds} rounds, "
          f"{results.n_accepted} accepted, final mean test accuracy {results.final_mean_test_score:.3f}, "
          f"{time.perf_counter() - started:.1f} s")
    if args.baseline:
        alone = train_alone_baseline(args.learner, datas, args.seed, rounds, learner_params=params,
                                     pooled_test=True)
        shared = pooled_test_score(args.learner, datas, learners[0].mli_get_current_weights(), args.seed,
                                   learner_params=params)
        print("\ntest accuracy of each learner's model: collective vs trained alone on its own share")
        print(format_comparison(results.final_test_scores, alone, collective_pooled=shared))
    if args.plots:
        from colearn.plot import save_plots

        for path in save_plots(results, args.plots):
            print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
