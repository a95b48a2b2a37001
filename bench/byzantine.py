"""The attack benchmark: honest learners' accuracy when some learners lie, for colearn and three anchors.

For every attack (see :mod:`bench.attacks`), number of attackers, partition, seed, threshold and learner it runs
colearn's protocol and, on the same learners and data, FedAvg, coordinate-wise median and Krum. A cell reports
the honest learners' mean final test accuracy (on their own test sets), its change against the honest-only run,
malicious and honest proposals accepted, the targeted class's recall (pooled test sets of all learners), and
whether any honest learner ever held weights other than the voted ones (or non-finite ones).

    python bench/byzantine.py            # the full grid (1.5-2 hours on 2 cores)
    python bench/byzantine.py --quick    # 2 of 5, seed 0, threshold 0.5, sgd: a few minutes
    python bench/byzantine.py --learners sgd --methods colearn --vote-rule robust-margins   # another vote rule

Writes ``bench/results/byzantine[-quick].json`` and prints a table per learner.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.attacks import Coalition, MaliciousLearner, TARGET_CLASS, digest_of, evaluate_on, recall  # noqa: E402
from bench.byzantine_anchors import run_anchor  # noqa: E402
from bench.common import parser, report  # noqa: E402
from colearn import Callback, Experiment, ProtocolConfig  # noqa: E402
from colearn.data.splits import split_learner_data  # noqa: E402
from colearn.data.tasks import load_task  # noqa: E402
from colearn.data.types import LearnerData  # noqa: E402
from colearn.proposals import nonfinite_reason  # noqa: E402
from colearn.registry import make_learner  # noqa: E402
from colearn.runner import learner_seed  # noqa: E402

# attack name -> (proposal attack, vote attack, attackers placed first (round 0) or last)
ATTACKS: Dict[str, Tuple[str, str, str]] = {
    "zero": ("zero", "honest", "last"),
    "random": ("random", "honest", "last"),
    "nan": ("nan", "honest", "last"),
    "zero+collude": ("zero", "collude", "last"),
    "random+collude": ("random", "collude", "last"),
    "nan+collude": ("nan", "collude", "last"),
    "always-reject": ("honest", "reject", "last"),
    "clique": ("honest", "clique", "last"),
    "label-flip+collude": ("label-flip", "collude", "last"),
    "class-cut+collude": ("class-cut", "collude", "last"),
    "hidden-state+collude": ("hidden-state", "collude", "last"),
    "garbage-round0+collude": ("garbage-round0", "collude", "first"),
    "mutate+collude": ("mutate", "collude", "last"),
}
METHODS = ("colearn", "fedavg", "median", "krum")
# colearn with an opt-in strategy (--methods): colearn.strategies.SuspendingStrategy, ExcludingStrategy
VARIANTS = ("colearn-suspend", "colearn-exclude", "colearn-exclude-suspend")
LEARNER_PARAMS: Dict[str, Dict[str, Any]] = {"sgd": {}, "torch-mlp": {"threads": 1}}


def attackers(n: int, k: int, placement: str) -> List[int]:
    return list(range(k)) if placement == "first" else list(range(n - k, n))


def flipped(data: LearnerData) -> LearnerData:
    """The attacker's data with every training label c replaced by c + 1 (mod the number of classes)."""
    return LearnerData(data.x_train, (data.y_train + 1) % data.n_classes, data.x_vote, data.y_vote, data.x_test,
                       data.y_test, data.n_classes, data.image_shape)


def build_learners(learner: str, datas: Sequence[LearnerData], seed: int, attack: Optional[str], k: int,
                   vote_rule: Any = None) -> Tuple[List[Any], List[int]]:
    """The learners of one run: honest ones and, for ``attack``, ``k`` attackers wrapping their own learners."""
    n = len(datas)
    params = dict(LEARNER_PARAMS.get(learner, {}))
    if vote_rule is not None:
        params["vote_rule"] = vote_rule
    bad = attackers(n, k, ATTACKS[attack][2]) if attack else []
    coalition = Coalition(set(bad))
    learners = []
    for i, data in enumerate(datas):
        proposal_attack, vote_attack = (ATTACKS[attack][:2] if i in bad else ("honest", "honest")) if attack \
            else ("honest", "honest")
        inner = make_learner(learner, flipped(data) if proposal_attack == "label-flip" else data,
                             seed=learner_seed(seed, i), **params)
        learners.append(MaliciousLearner(inner, i, coalition, proposal_attack, vote_attack, data.n_classes, seed)
                        if i in bad else inner)
    return learners, bad


def voted_digest(weights: Any) -> Optional[str]:
    """Digest of the weights a learner holds or the round adopted (tensors converted to arrays)."""
    return digest_of(weights)


class Watch(Callback):
    """After every round: did any honest learner come to hold weights other than the voted ones, or NaN?"""

    def __init__(self, learners: Sequence[Any], honest: Sequence[int]):
        self.learners, self.honest = learners, list(honest)
        self.held = {i: voted_digest(learners[i].mli_get_current_weights()) for i in honest}
        self.accepted: Optional[str] = None
        self.violations: List[str] = []

    def on_weights_accepted(self, round_index: int, weights: Any) -> None:
        self.accepted = voted_digest(weights)

    def on_round_end(self, record: Any) -> None:
        for i in self.honest:
            weights = self.learners[i].mli_get_current_weights()
            tree = weights.weights
            items = tree.items() if isinstance(tree, dict) else enumerate(tree)  # named, or a list (Keras)
            if nonfinite_reason({str(k): np.asarray(getattr(v, "detach", lambda: v)()) for k, v in items}):
                self.violations.append(f"round {record.round_index}: learner {i} holds non-finite weights")
            expected = self.accepted if record.accepted and not record.accept_errors[i] else self.held[i]
            digest = voted_digest(weights)
            if digest != expected:
                self.violations.append(f"round {record.round_index}: learner {i} holds weights nobody voted on")
            self.held[i] = digest
        self.accepted = None


def learner_scores(learners: Sequence[Any], datas: Sequence[LearnerData]) -> Dict[str, List[float]]:
    """Per learner: accuracy on its own test set, and target-class recall on every learner's test set together."""
    x_all = np.concatenate([d.x_test for d in datas])
    y_all = np.concatenate([d.y_test for d in datas])
    accuracies, recalls = [], []
    for learner, data in zip(learners, datas):
        inner = getattr(learner, "inner", learner)
        accuracies.append(100 * float(np.mean(evaluate_on(inner, data.x_test) == data.y_test)))
        recalls.append(100 * recall(evaluate_on(inner, x_all), y_all, TARGET_CLASS))
    return {"accuracies": accuracies, "recalls": recalls}


def honest_mean(cell: Dict[str, Any], honest: Sequence[int]) -> Tuple[float, float]:
    """Mean accuracy and target recall of the learners ``honest`` in a cell."""
    return (float(np.mean([cell["accuracies"][i] for i in honest])),
            float(np.mean([cell["recalls"][i] for i in honest])))


def run_colearn(learner: str, datas: Sequence[LearnerData], seed: int, attack: Optional[str], k: int,
                threshold: float, n_rounds: int, vote_rule: Any = None, strategy: Any = None) -> Dict[str, Any]:
    learners, bad = build_learners(learner, datas, seed, attack, k, vote_rule)
    honest = [i for i in range(len(datas)) if i not in bad]
    watch = Watch(learners, honest)
    config = ProtocolConfig(vote_threshold=threshold, seed=seed, strategy=strategy)
    results = Experiment(learners, config, hooks=[watch], measure_size=False).run(n_rounds)
    accepted = [r for r in results.rounds if r.accepted]
    return {**learner_scores(learners, datas), "honest": honest,
            "malicious_accepted": sum(1 for r in accepted if r.proposer in bad),
            "malicious_proposals": sum(1 for r in results.rounds if r.proposer in bad),
            "honest_accepted": sum(1 for r in accepted if r.proposer not in bad),
            "honest_proposals": sum(1 for r in results.rounds if r.proposer not in bad),
            "violations": len(watch.violations), "first_violation": (watch.violations or [None])[0],
            "flagged": sorted({i for r in results.rounds for i in r.flagged})}


def run_cell(method: str, learner: str, task_data: Any, n: int, k: int, partition: str, seed: int,
             threshold: float, attack: Optional[str], n_rounds: int, **options: Any) -> Dict[str, Any]:
    datas = split_learner_data(task_data, n, partition=partition, alpha=0.3, seed=seed)
    if method == "colearn":
        return run_colearn(learner, datas, seed, attack, k, threshold, n_rounds, **options)
    if method in VARIANTS:
        from colearn.strategies import ExcludingStrategy, SuspendingStrategy

        strategy = {"colearn-suspend": SuspendingStrategy(threshold),
                    "colearn-exclude": ExcludingStrategy(threshold),
                    "colearn-exclude-suspend": SuspendingStrategy(decider=ExcludingStrategy(threshold))}[method]
        return run_colearn(learner, datas, seed, attack, k, threshold, n_rounds, strategy=strategy, **options)
    learners, bad = build_learners(learner, datas, seed, attack, k)
    honest = [i for i in range(n) if i not in bad]
    run_anchor(method, learners, bad, n_rounds)
    return {**learner_scores(learners, datas), "honest": honest}


def grid(quick: bool, learner: str, configs: Sequence[Tuple[int, int]], seeds: Sequence[int],
         thresholds: Sequence[float]) -> List[Dict[str, Any]]:
    if quick:
        return [dict(learner=learner, n=5, k=2, partition=p, seed=0, threshold=0.5) for p in ("iid", "dirichlet")]
    return [dict(learner=learner, n=n, k=k, partition=p, seed=s, threshold=t)
            for (n, k) in configs for p in ("iid", "dirichlet") for t in thresholds for s in seeds]


def _job(job: Tuple[Dict[str, Any], str, Optional[str], int, Optional[str]]) -> Dict[str, Any]:
    setting, method, attack, n_rounds, vote_rule = job
    options = {"vote_rule": vote_rule} if vote_rule and method.startswith("colearn") else {}
    try:
        cell = run_cell(method, setting["learner"], _TASK, setting["n"], setting["k"], setting["partition"],
                        setting["seed"], setting["threshold"], attack, n_rounds, **options)
    except Exception as exc:  # a cell that breaks is reported, and the other cells still run
        cell = {"error": f"{type(exc).__name__}: {exc}"}
    return {**setting, "method": method, "attack": attack or "none", **cell}


_TASK = None


def _init_worker() -> None:
    global _TASK
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _TASK = load_task("digits")


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--learners", default="sgd,torch-mlp", help="comma-separated learner names")
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated attack names")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--configs", default="5:1,5:2,10:3", help="n:k pairs (learners : attackers)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--thresholds", default="0.5,0.75")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--workers", type=int, default=2, help="processes running cells side by side")
    p.add_argument("--vote-rule", default=None, help="colearn's learners vote with this rule (default: their own)")
    args = p.parse_args(argv)
    learner_names = ["sgd"] if args.quick and args.learners == "sgd,torch-mlp" else args.learners.split(",")
    attacks = [a for a in args.attacks.split(",") if a]
    configs = [tuple(int(x) for x in pair.split(":")) for pair in args.configs.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    thresholds = [float(x) for x in args.thresholds.split(",")]
    jobs = []
    for learner in learner_names:
        for setting in grid(args.quick, learner, configs, seeds, thresholds):
            for method in args.methods.split(","):
                if not method.startswith("colearn") and setting["threshold"] != 0.5:
                    continue  # the anchors have no threshold
                jobs.extend((setting, method, attack, args.rounds, args.vote_rule) for attack in [None, *attacks])
    started = time.perf_counter()
    raw: List[Dict[str, Any]] = []
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=args.workers, initializer=_init_worker) as pool:
        for number, row in enumerate(pool.map(_job, jobs, chunksize=1), 1):
            raw.append(row)
            if number % 20 == 0 or number == len(jobs):
                print(f"[{number}/{len(jobs)} cells] {time.perf_counter() - started:.0f} s", flush=True)
    failed = [r for r in raw if "error" in r]
    for row in failed:
        print(f"cell failed: {row['method']} {row['attack']} n={row['n']} k={row['k']} {row['partition']} "
              f"seed {row['seed']}: {row['error']}")
    rows = summarise([r for r in raw if "error" not in r])
    for learner in learner_names:
        report(f"byzantine-{learner}", f"Attack benchmark: {learner}, honest accuracy and target-class recall",
               ["n", "k", "partition", "threshold", "attack", "method", "accuracy", "delta", "recall",
                "delta_recall", "mal_acc", "hon_acc", "violations"],
               [r for r in rows if r["learner"] == learner], quick=args.quick,
               extra={"raw": [r for r in raw if r["learner"] == learner], "seconds": time.perf_counter() - started,
                      "command": "python bench/byzantine.py " + " ".join(argv if argv is not None else sys.argv[1:])},
               out=args.out)


def summarise(raw: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Seed means per cell, with the change against the same method's honest-only run on the same honest learners."""
    keys = ("learner", "n", "k", "partition", "threshold", "method", "attack")
    cells: Dict[Tuple, List[Dict[str, Any]]] = {}
    for row in raw:
        cells.setdefault(tuple(row[k] for k in keys), []).append(row)
    rows = []
    for key, runs in cells.items():
        row = dict(zip(keys, key))
        scores = [honest_mean(r, r["honest"]) for r in runs]
        row["accuracy"] = float(np.mean([a for a, _ in scores]))
        row["recall"] = float(np.mean([r for _, r in scores]))
        base = {r["seed"]: r for r in cells.get(key[:-1] + ("none",), [])}
        if all(r["seed"] in base for r in runs):
            base_scores = [honest_mean(base[r["seed"]], r["honest"]) for r in runs]
            row["delta"] = row["accuracy"] - float(np.mean([a for a, _ in base_scores]))
            row["delta_recall"] = row["recall"] - float(np.mean([r for _, r in base_scores]))
        if row["method"].startswith("colearn"):
            row["mal_acc"] = f"{sum(r['malicious_accepted'] for r in runs)}/{sum(r['malicious_proposals'] for r in runs)}"
            row["hon_acc"] = f"{sum(r['honest_accepted'] for r in runs)}/{sum(r['honest_proposals'] for r in runs)}"
            row["violations"] = sum(r["violations"] for r in runs)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
