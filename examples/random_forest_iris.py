"""A random forest grown collectively on iris: each accepted proposal adds trees trained on one learner's data.

    python examples/random_forest_iris.py            # 3 learners, 10 rounds, 5 trees per proposal
    python examples/random_forest_iris.py --fast     # 3 rounds (what the tests run)

The forest travels between learners as plain typed arrays (the node fields of every tree), checked
before any tree is rebuilt; nothing is pickled. At the end the shared forest is exported as skops
bytes and loaded back through an explicit type allow-list.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from colearn.data import load_task, split_learner_data
from colearn.experiment import Experiment
from colearn.protocol import ProtocolConfig
from colearn.results import ExperimentResults
from colearn_other.random_forest import load_skops_forest, make_random_forest_learner


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--trees", type=int, default=5, help="trees added per proposal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", default=bool(os.environ.get("COLEARN_FAST")),
                        help="3 rounds (also: COLEARN_FAST=1)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> ExperimentResults:
    args = parse_args(argv)
    datas = split_learner_data(load_task("iris"), args.learners, seed=args.seed)
    learners = [make_random_forest_learner(d, seed=args.seed * 1000 + i, n_trees_per_proposal=args.trees,
                                           max_depth=4) for i, d in enumerate(datas)]
    rounds = 3 if args.fast else args.rounds

    def report(record) -> None:
        trees = len(learners[0].model.estimators_)
        print(f"round {record.round_index:2d}: proposer {record.proposer}, "
              f"{'accepted' if record.accepted else 'rejected'}, learner 0 holds {trees} trees, "
              f"mean test accuracy {record.mean_held_test_score:.3f}")

    results = Experiment(learners, ProtocolConfig(seed=args.seed), hooks=[report]).run(rounds)
    exported = learners[0].mli_get_current_model()
    forest = load_skops_forest(exported.model)
    print(f"random forest on iris: {results.n_accepted}/{rounds} accepted, final mean test accuracy "
          f"{results.final_mean_test_score:.3f}; exported {len(forest.estimators_)} trees as "
          f"{len(exported.model)} bytes of skops")
    return results


if __name__ == "__main__":
    main()
