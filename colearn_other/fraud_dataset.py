"""colearn 0.2.x's fraud-detection task (IEEE-CIS transactions): ``FraudLearner`` (scikit-learn's
``SGDClassifier``), ``prepare_data_loaders``, ``prepare_learner``, ``split_to_folders``, registered as ``FRAUD``.

Local data only: ``split_to_folders(data_dir, n_learners)`` reads ``train_identity.csv`` and
``train_transaction.csv`` from ``data_dir`` (needs pandas), preprocesses them as 0.2.x did (cached as
``data.npy`` / ``labels.npy`` in ``data_dir``) and writes each learner's ``data.npy`` / ``labels.npy``.
Differences from 0.2.x: the learner votes with a vote set (0.2.x voted on its training data) and copies
weights in and out (0.2.x aliased the model's arrays).
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
from sklearn.linear_model import SGDClassifier

import colearn.compat  # noqa: F401  (colearn_grpc from a source checkout)
from colearn.compat.task_files import (local_folder, read_arrays, require_files, source_folder, three_way,
                                       train_vote_test, write_parts)
from colearn.learner_utils import check_named_arrays_match, vote_for
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights
from colearn_grpc.factory_registry import FactoryRegistry

TASK = "colearn_other.fraud_dataset"
DATA, LABELS = "data", "labels"
Split = Tuple[np.ndarray, np.ndarray]
CATEGORICAL = ["id_12", "id_13", "id_14", "id_15", "id_16", "id_17", "id_18", "id_19", "id_20", "id_21", "id_22",
               "id_23", "id_24", "id_25", "id_26", "id_27", "id_28", "id_29", "id_30", "id_31", "id_32", "id_33",
               "id_34", "id_35", "id_36", "id_37", "id_38", "DeviceType", "DeviceInfo", "ProductCD", "card4", "card6",
               "M4", "P_emaildomain", "R_emaildomain", "card1", "card2", "card3", "card5", "addr1", "addr2", "M1",
               "M2", "M3", "M5", "M6", "M7", "M8", "M9", "P_emaildomain_1", "P_emaildomain_2", "P_emaildomain_3",
               "R_emaildomain_1", "R_emaildomain_2", "R_emaildomain_3"]


class ModelType(Enum):
    SVM = 1


def _infinite_batch_sampler(data_size: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        order = rng.permutation(data_size)
        for start in range(0, data_size, batch_size):
            yield order[start:start + batch_size]


class FraudLearner(MachineLearningInterface):
    """A linear classifier (``SGDClassifier``, modified Huber loss) trained ``steps_per_round`` batches per
    proposal and scored by accuracy."""

    def __init__(self, train_data: np.ndarray, train_labels: np.ndarray, vote_data: np.ndarray,
                 vote_labels: np.ndarray, test_data: np.ndarray, test_labels: np.ndarray, batch_size: int = 10000,
                 steps_per_round: int = 1, seed: Optional[int] = None):
        if len(train_data) == 0 or len(vote_data) == 0:
            raise ValueError("train_data and vote_data must not be empty")
        self.train_data, self.train_labels = train_data, train_labels
        self.vote_data, self.vote_labels = vote_data, vote_labels
        self.test_data, self.test_labels = test_data, test_labels
        self.batch_size, self.steps_per_round = int(batch_size), int(steps_per_round)
        self.class_labels = np.unique(train_labels)
        self.train_sampler = _infinite_batch_sampler(len(train_data), self.batch_size, np.random.default_rng(seed))
        self.model = SGDClassifier(max_iter=1, verbose=0, loss="modified_huber", random_state=seed)
        self.model.partial_fit(train_data[:1], train_labels[:1], classes=self.class_labels)
        self.vote_score = self.test(self.vote_data, self.vote_labels)

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights={"coef_": self.model.coef_.copy(), "intercept_": self.model.intercept_.copy()})

    def set_weights(self, weights: Weights) -> None:
        checked = check_named_arrays_match(weights.weights, self.mli_get_current_weights().weights)
        self.model.coef_ = np.array(checked["coef_"], copy=True)
        self.model.intercept_ = np.array(checked["intercept_"], copy=True)

    def mli_propose_weights(self) -> Weights:
        current = self.mli_get_current_weights()
        try:
            for _ in range(self.steps_per_round):
                batch = next(self.train_sampler)
                self.model.partial_fit(self.train_data[batch], self.train_labels[batch], classes=self.class_labels)
            return self.mli_get_current_weights()
        finally:
            self.set_weights(current)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        current = self.mli_get_current_weights()
        self.set_weights(weights)
        try:
            vote_score = self.test(self.vote_data, self.vote_labels)
            test_score = self.test(self.test_data, self.test_labels) if len(self.test_data) else 0.0
        finally:
            self.set_weights(current)
        return ProposedWeights(weights=weights, vote_score=vote_score, test_score=test_score,
                               vote=vote_for(vote_score, self.vote_score, minimise=False), criterion="accuracy")

    def mli_accept_weights(self, weights: Weights) -> None:
        self.set_weights(weights)
        self.vote_score = self.test(self.vote_data, self.vote_labels)

    def test(self, data: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy on ``data``."""
        return float(self.model.score(data, labels))


@FactoryRegistry.register_dataloader("FRAUD")
def prepare_data_loaders(location: Optional[str] = None, train_ratio: float = 0.8, vote_ratio: float = 0.1,
                         **_kwargs: Any) -> Tuple[Split, Split, Split]:
    """``(train_data, train_labels), (vote_data, vote_labels), (test_data, test_labels)`` of ``location``."""
    folder = local_folder(location if location is not None else _kwargs.get("train_folder"), TASK)
    data, labels = read_arrays(folder, (DATA, LABELS), TASK)
    return tuple((data[part], labels[part]) for part in three_way(len(data), train_ratio, vote_ratio, TASK))  # type: ignore


@FactoryRegistry.register_model_architecture("FRAUD", ["FRAUD"])
def prepare_learner(data_loaders: Tuple[Split, ...], **_kwargs: Any) -> FraudLearner:
    """A :class:`FraudLearner` on (train, vote, test) splits (with two, 0.2.x's older form, the test set votes)."""
    train, vote, test = train_vote_test(data_loaders)
    test = vote if test is None else test
    return FraudLearner(*train, *vote, *test, **{k: v for k, v in _kwargs.items()
                                                 if k in ("batch_size", "steps_per_round", "seed")})


def fraud_preprocessing(data_dir: Any, use_cache: bool = True) -> Split:
    """0.2.x's preprocessing: merge the CSVs, label-encode categories, sort by time, fill gaps with the column
    mean, standardise; cached as ``data.npy`` / ``labels.npy`` in ``data_dir``."""
    folder = Path(data_dir)
    if use_cache and (folder / "data.npy").is_file() and (folder / "labels.npy").is_file():
        return (np.load(folder / "data.npy", allow_pickle=False), np.load(folder / "labels.npy", allow_pickle=False))
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{TASK}.split_to_folders needs pandas to read the CSV files: pip install pandas") from exc
    from sklearn.preprocessing import LabelEncoder, scale

    identity, transaction = require_files(folder, ["train_identity.csv", "train_transaction.csv"], TASK,
                                          "the IEEE-CIS fraud detection CSV files")
    train = pd.merge(pd.read_csv(transaction), pd.read_csv(identity), on="TransactionID", how="left")
    for column in CATEGORICAL:
        if column in train.columns:
            values = list(train[column].astype(str).values)
            train[column] = LabelEncoder().fit(values).transform(values)
    train = train.sort_values("TransactionDT")
    x = train.drop(["isFraud", "TransactionDT", "TransactionID"], axis=1).replace([np.inf, -np.inf], np.nan)
    x = x.fillna(x.mean())
    data = scale(x.to_numpy().astype(np.float64)).astype(np.float32)
    labels = train["isFraud"].to_numpy().astype(np.float32)
    np.save(folder / "data.npy", data, allow_pickle=False)
    np.save(folder / "labels.npy", labels, allow_pickle=False)
    return data, labels


def split_to_folders(data_dir: str, n_learners: int, data_split: Optional[List[float]] = None,
                     shuffle_seed: Optional[int] = None, output_folder: Optional[Path] = None,
                     **_kwargs: Any) -> List[str]:
    """Preprocess the fraud CSVs in ``data_dir`` and split them among ``n_learners`` folders."""
    data, labels = fraud_preprocessing(source_folder(data_dir, TASK, "train_identity.csv and train_transaction.csv"))
    return write_parts({DATA: data, LABELS: labels}, n_learners, data_split, shuffle_seed, output_folder, "fraud")
