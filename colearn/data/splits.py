"""Split one data set among learners (IID, Dirichlet non-IID, shards), then each share into train/vote/test.

Everything is seeded: the same arguments give the same split. A split that would leave a learner
without training, vote or test data is refused with a ``ValueError`` that names the learner and says
what to change, instead of producing a learner that cannot take part.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from colearn.data.tasks import Task
from colearn.data.types import LearnerData

PARTITIONS = ("iid", "dirichlet", "shards")
SUBSETS = ("train", "vote", "test")


def _check_common(n_samples: int, n_learners: int, partition: str, alpha: float, shards_per_learner: int) -> None:
    if isinstance(n_learners, bool) or not isinstance(n_learners, (int, np.integer)) or n_learners < 1:
        raise ValueError(f"n_learners must be an integer >= 1, got {n_learners!r}")
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; choose one of {PARTITIONS}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if isinstance(shards_per_learner, bool) or not isinstance(shards_per_learner, (int, np.integer)) \
            or shards_per_learner < 1:
        raise ValueError(f"shards_per_learner must be an integer >= 1, got {shards_per_learner!r}")
    if n_samples < n_learners:
        raise ValueError(f"cannot split {n_samples} samples among n_learners={n_learners}: lower n_learners")


def partition_indices(y: np.ndarray, n_learners: int, *, partition: str = "iid", alpha: float = 0.5,
                      shards_per_learner: int = 2, seed: int = 0) -> List[np.ndarray]:
    """Indices of the samples each learner gets (disjoint, together all samples, each sorted).

    - ``iid``: every class dealt out evenly, so shares have (nearly) equal sizes and class mixes.
    - ``dirichlet``: per class, the learners' proportions are drawn from Dirichlet(``alpha``); small
      ``alpha`` gives each learner few classes, large ``alpha`` approaches IID.
    - ``shards``: samples sorted by label, cut into ``n_learners * shards_per_learner`` shards, and each
      learner gets ``shards_per_learner`` random shards (McMahan et al., 2017).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-d, got shape {y.shape}")
    _check_common(len(y), n_learners, partition, alpha, shards_per_learner)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    if partition == "iid":
        order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in classes])
        start = int(rng.integers(n_learners))  # which learner gets the first (and any extra) sample
        owners = (np.arange(len(order)) + start) % n_learners
        shares = [order[owners == i] for i in range(n_learners)]
    elif partition == "dirichlet":
        shares_lists: List[List[np.ndarray]] = [[] for _ in range(n_learners)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(y == c))
            proportions = rng.dirichlet(np.full(n_learners, float(alpha)))
            cuts = np.round(np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for i, part in enumerate(np.split(members, cuts)):
                shares_lists[i].append(part)
        shares = [np.concatenate(parts) for parts in shares_lists]
    else:
        n_shards = n_learners * shards_per_learner
        if n_shards > len(y):
            raise ValueError(f"{n_shards} shards (n_learners={n_learners} x shards_per_learner="
                             f"{shards_per_learner}) exceed the {len(y)} samples: lower either")
        by_label = np.argsort(y, kind="stable")
        shard_order = rng.permutation(n_shards)
        shards = np.array_split(by_label, n_shards)
        shares = [np.concatenate([shards[s] for s in shard_order[i::n_learners]]) for i in range(n_learners)]
    return [np.sort(share).astype(np.int64) for share in shares]


def _check_fractions(fractions: Sequence[float]) -> Tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not math.isfinite(f) or f <= 0 for f in values) or abs(sum(values) - 1) > 1e-6:
        raise ValueError(f"fractions (train, vote, test) must be three positive numbers summing to 1, "
                         f"got {list(fractions)}")
    return values  # type: ignore[return-value]


def stratified_subsets(y: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> List[np.ndarray]:
    """Split positions ``0..len(y)-1`` into len(fractions) subsets with those fractions, stratified by label.

    Samples are grouped by class (shuffled within it) and dealt to the subset that is furthest below
    its target share, so every class is spread over the subsets in proportion and the subset sizes
    are within one sample of ``fraction * len(y)``. With fewer samples than subsets, train comes first.
    """
    shares = [float(f) for f in fractions]
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in rng.permutation(np.unique(y))]) \
        if len(y) else np.empty(0, dtype=np.int64)
    counts = [0] * len(shares)
    assigned = np.empty(len(order), dtype=np.int64)
    for position in range(len(order)):
        deficits = [f * (position + 1) - n for f, n in zip(shares, counts)]
        subset = deficits.index(max(deficits))  # ties go to the earlier subset (train, then vote)
        assigned[position] = subset
        counts[subset] += 1
    return [np.sort(order[assigned == s]) for s in range(len(fractions))]


def _refusal(learner: int, n_samples: int, subset: str, partition: str, alpha: float,
             shards_per_learner: int, fractions: Tuple[float, float, float]) -> str:
    how = {"iid": "iid", "dirichlet": f"dirichlet alpha={alpha:g}",
           "shards": f"shards (shards_per_learner={shards_per_learner})"}[partition]
    remedy = {"iid": "lower n_learners", "dirichlet": "raise alpha or lower n_learners",
              "shards": "lower n_learners"}[partition]
    return (f"learner {learner} gets {n_samples} sample{'s' if n_samples != 1 else ''} under {how}; "
            f"its {subset} set would be empty with fractions {list(fractions)}: {remedy}, "
            f"or change the seed")


def split_learner_data(task: Task, n_learners: int, *, partition: str = "iid", alpha: float = 0.5,
                       shards_per_learner: int = 2, seed: int = 0,
                       fractions: Sequence[float] = (0.6, 0.2, 0.2),
                       min_per_subset: int = 1) -> List[LearnerData]:
    """Split ``task`` among ``n_learners`` (see :func:`partition_indices`), then each learner's share into
    train / vote / test with ``fractions``, stratified by label. Seeded.

    Raises ``ValueError`` naming the learner when its train, vote or test set would have fewer than
    ``min_per_subset`` samples (a learner without them cannot propose, vote or report).
    """
    fractions = _check_fractions(fractions)
    if min_per_subset < 1:
        raise ValueError(f"min_per_subset must be >= 1, got {min_per_subset}")
    shares = partition_indices(task.y, n_learners, partition=partition, alpha=alpha,
                               shards_per_learner=shards_per_learner, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    result: List[LearnerData] = []
    for learner, share in enumerate(shares):
        subsets = [share[positions] for positions in stratified_subsets(task.y[share], fractions, rng)]
        for name, indices in zip(SUBSETS, subsets):
            if len(indices) < min_per_subset:
                raise ValueError(_refusal(learner, len(share), name, partition, alpha, shards_per_learner,
                                          fractions))
        train, vote, test = subsets
        result.append(LearnerData(task.x[train], task.y[train], task.x[vote], task.y[vote], task.x[test],
                                  task.y[test], task.n_classes, task.image_shape))
    return result


def class_histogram(data: Sequence[LearnerData], which: str = "train",
                    n_classes: Optional[int] = None) -> np.ndarray:
    """Counts of each class per learner, shape (n_learners, n_classes), for ``which`` in train/vote/test/all."""
    n_classes = n_classes or (data[0].n_classes if data else 0)
    rows = []
    for d in data:
        labels = {"train": [d.y_train], "vote": [d.y_vote], "test": [d.y_test],
                  "all": [d.y_train, d.y_vote, d.y_test]}[which]
        rows.append(np.bincount(np.concatenate(labels), minlength=n_classes))
    return np.asarray(rows)


__all__ = ["PARTITIONS", "partition_indices", "split_learner_data", "stratified_subsets", "class_histogram"]
