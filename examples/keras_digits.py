"""Collective learning with Keras 3 on the embedded digits (8x8 images): 5 learners, an MLP or a small CNN.

    python examples/keras_digits.py                 # MLP, 5 IID learners, 20 rounds
    python examples/keras_digits.py --model cnn
    python examples/keras_digits.py --fast          # 3 rounds, 1 epoch per proposal (what the tests run)

Prints every round (proposer, accepted, mean test accuracy of the models the learners hold) and the
final mean accuracy and wall time (TensorFlow's start-up included). Nothing is downloaded: the digits
ship with scikit-learn.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # before TensorFlow is imported: the wall time includes its start-up

import argparse  # noqa: E402
from typing import List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from colearn.data.splits import split_learner_data  # noqa: E402
from colearn.data.tasks import load_task  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.results import ExperimentResults  # noqa: E402
from colearn_keras.factories import make_cnn_learner, make_mlp_learner  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--learners", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--partition", default="iid", help="iid, dirichlet or shards")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="3 rounds, 1 epoch per proposal")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> ExperimentResults:
    """Split digits among the learners, build them and run the experiment."""
    tf.get_logger().setLevel("ERROR")  # each learner traces its functions once; TensorFlow warns about that
    datas = split_learner_data(load_task("digits"), args.learners, partition=args.partition, seed=args.seed)
    factory = make_mlp_learner if args.model == "mlp" else make_cnn_learner
    params = {"epochs": 1} if args.fast else {}
    learners = [factory(data, seed=args.seed * 1000 + i, **params) for i, data in enumerate(datas)]
    rounds = 3 if args.fast else args.rounds

    def report(record) -> None:
        scores: List[float] = [s for s in record.held_test_scores if s is not None]
        print(f"round {record.round_index:2d}: proposer {record.proposer}, "
              f"{'accepted' if record.accepted else 'rejected'}, mean test accuracy {np.mean(scores):.3f}")

    return Experiment(learners, ProtocolConfig(seed=args.seed), hooks=[report]).run(rounds)


def main(argv: Optional[Sequence[str]] = None) -> ExperimentResults:
    args = parse_args(argv)
    results = run(args)
    final = [s for s in results.rounds[-1].held_test_scores if s is not None]
    print(f"{args.model}: {len(results.rounds)} rounds, {sum(r.accepted for r in results.rounds)} accepted, "
          f"final mean test accuracy {np.mean(final):.3f} (min {min(final):.3f}), "
          f"{time.perf_counter() - STARTED:.1f} s since start (TensorFlow start-up included)")
    return results


if __name__ == "__main__":
    main()
