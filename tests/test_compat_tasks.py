"""colearn 0.2.x's task modules, used as 0.2.x code used them, on tiny local files each test makes."""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import colearn.compat  # noqa: F401  (makes colearn_grpc importable from an uninstalled checkout)
from colearn.compat.task_files import TaskDataError
from colearn.data.mnist import write_idx
from colearn.ml_interface import MachineLearningInterface, Weights
from colearn.utils.data import DownloadNotSupportedError
from colearn_other.demo_utils import get_score_name, get_split_to_folders

pytestmark = pytest.mark.timeout(300)


def one_round(learner: MachineLearningInterface) -> None:
    """Propose, test and accept: the held model changes only on accept."""
    before = learner.mli_get_current_weights().weights
    proposal = learner.mli_propose_weights()
    verdict = learner.mli_test_weights(proposal)
    assert isinstance(verdict.vote, bool) and np.isfinite(verdict.vote_score) and np.isfinite(verdict.test_score)
    after_test = learner.mli_get_current_weights().weights
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(_values(before), _values(after_test)))
    learner.mli_accept_weights(proposal)
    held = learner.mli_get_current_weights().weights
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(_values(held), _values(proposal.weights)))


def _values(weights):
    return list(weights.values()) if isinstance(weights, dict) else list(weights)


# ---- Keras: MNIST, CIFAR-10, Scania ------------------------------------------------------------------------
def mnist_files(folder: Path, n_train: int = 40, n_test: int = 20) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    return folder


@pytest.mark.slow
def test_keras_mnist_split_prepare_and_serve_through_the_registry(tmp_path):
    from colearn_grpc.example_mli_factory import ExampleMliFactory
    from colearn_keras import keras_mnist
    from colearn_keras.keras_learner import KerasLearner

    folders = keras_mnist.split_to_folders(2, shuffle_seed=1, output_folder=tmp_path / "split",
                                           data_dir=mnist_files(tmp_path / "mnist"))
    assert folders == [str(tmp_path / "split" / "0"), str(tmp_path / "split" / "1")]
    images = np.load(Path(folders[0]) / keras_mnist.IMAGE_FL)
    assert images.shape == (30, 28, 28, 1) and images.dtype == np.float32 and images.max() <= 1.0
    # the same seed gives 0.2.x's split (np.random.seed + permutation)
    assert keras_mnist.split_to_folders(2, shuffle_seed=1, output_folder=tmp_path / "again",
                                        data_dir=tmp_path / "mnist") != folders
    assert np.array_equal(np.load(tmp_path / "again" / "0" / "labels.npy"), np.load(Path(folders[0]) / "labels.npy"))

    train, vote, test = keras_mnist.prepare_data_loaders(folders[0], train_ratio=0.6, vote_ratio=0.2, batch_size=4)
    assert sum(int(x.shape[0]) for x, _ in train) == 18 and sum(int(x.shape[0]) for x, _ in vote) == 6
    learner = keras_mnist.prepare_learner((train, vote, test), steps_per_epoch=2, vote_batches=1)
    assert isinstance(learner, KerasLearner) and learner.criterion == "sparse_categorical_accuracy"
    assert learner.model.input_shape == (None, 28, 28, 1)
    one_round(learner)

    older = keras_mnist.prepare_data_loaders(train_folder=folders[1])  # 0.2.x's older keyword
    assert sum(int(x.shape[0]) for x, _ in older[0]) == 24
    factory = ExampleMliFactory()  # the registry entry, as the gRPC server uses it
    assert factory.get_dataloaders()["KERAS_MNIST"]["batch_size"] == 32
    assert factory.get_models()["KERAS_MNIST"]["steps_per_epoch"] == 100
    mli = factory.get_mli("KERAS_MNIST", json.dumps({"steps_per_epoch": 20}), "KERAS_MNIST",
                          json.dumps({"location": folders[1]}))
    assert isinstance(mli, KerasLearner) and mli.model_fit_kwargs["steps_per_epoch"] == 20


@pytest.mark.slow
def test_keras_cifar10_reads_the_binary_batches(tmp_path):
    from colearn_keras import keras_cifar10

    rng = np.random.default_rng(0)
    source = tmp_path / "cifar-10-batches-bin"
    source.mkdir()
    records = rng.integers(0, 256, (24, keras_cifar10.RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = np.arange(24) % 10
    records.tofile(source / "data_batch_1.bin")
    folders = keras_cifar10.split_to_folders(1, data_split=[1.0], shuffle_seed=0, output_folder=tmp_path / "out",
                                             data_dir=source)
    images, labels = np.load(Path(folders[0]) / "images.npy"), np.load(Path(folders[0]) / "labels.npy")
    assert images.shape == (24, 32, 32, 3) and sorted(labels.tolist()) == sorted((np.arange(24) % 10).tolist())
    first = np.flatnonzero(np.random.RandomState(0).permutation(24) == 0)[0]  # where record 0 went
    assert images[first, 0, 1, 2] == pytest.approx(records[0, 1 + 2 * 1024 + 1] / 255)  # blue plane, row 0, col 1
    learner = keras_cifar10.prepare_learner(keras_cifar10.prepare_data_loaders(folders[0], batch_size=8),
                                            steps_per_epoch=1, vote_batches=1)
    one_round(learner)
    (source / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(TaskDataError, match="not a CIFAR-10 binary batch"):
        keras_cifar10.split_to_folders(1, data_split=[1.0], data_dir=source, output_folder=tmp_path / "bad")


@pytest.mark.slow
def test_keras_scania_reads_the_learner_csv_files(tmp_path):
    from colearn_keras import keras_scania

    rng = np.random.default_rng(0)
    for set_, n in (("train", 24), ("vote", 8), ("test", 8)):
        x = rng.normal(size=(n, 6))
        y = (x[:, 0] > 0).astype(int)
        header = ",".join(["", *[f"f{i}" for i in range(6)]])
        rows = [",".join([str(i), *map(str, row)]) for i, row in enumerate(x)]
        (tmp_path / f"X_{set_}_learner.csv").write_text("\n".join([header, *rows]) + "\n")
        (tmp_path / f"y_{set_}_learner.csv").write_text("\n".join([",class", *[f"{i},{v}" for i, v in enumerate(y)]]))
    train, vote, test = keras_scania.prepare_data_loaders(str(tmp_path), batch_size=8)
    x, y = next(iter(train))
    assert tuple(x.shape) == (8, 6) and set(y.numpy().tolist()) <= {0, 1}
    learner = keras_scania.prepare_learner((train, vote, test), steps_per_epoch=3)
    one_round(learner)
    (tmp_path / "y_vote_learner.csv").unlink()
    with pytest.raises(TaskDataError, match="y_vote_learner.csv"):
        keras_scania.prepare_data_loaders(str(tmp_path))


# ---- PyTorch: chest X-rays, COVID X-ray features --------------------------------------------------------
def xray_images(folder: Path, per_class: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for category, level in (("NORMAL", 60), ("PNEUMONIA", 190)):
        (folder / category).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (24, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / category / f"{category.lower()}_{i}.jpeg")
    return folder


@pytest.mark.slow
def test_pytorch_xray_split_prepare_and_learn(tmp_path):
    import torch

    from colearn_pytorch import pytorch_xray

    source = xray_images(tmp_path / "chest_xray")
    folders = pytorch_xray.split_to_folders(str(source), 2, shuffle_seed=0, output_folder=tmp_path / "split")
    assert sorted(p.name for p in (Path(folders[0]) / "NORMAL").iterdir()) != []
    assert len(list(Path(folders[0]).rglob("*.jpeg"))) == len(list(Path(folders[1]).rglob("*.jpeg"))) == 8
    train, vote, test = pytorch_xray.prepare_data_loaders(folders[0], train_ratio=0.5, vote_ratio=0.25,
                                                          batch_size=2)
    data, labels = next(iter(train))
    assert tuple(data.shape) == (2, 1, 128, 128) and float(data.max()) <= 1.0 and tuple(labels.shape) == (2, 1)
    learner = pytorch_xray.prepare_learner((train, vote, test), steps_per_epoch=2, vote_batches=2,
                                           vote_on_accuracy=False)
    one_round(learner)
    assert isinstance(learner.mli_get_current_weights().weights["conv1.weight"], torch.Tensor)


def covid_mat_files(folder: Path, per_class: int = 30, n_features: int = 70) -> Path:
    import scipy.io as sio

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for label, name in enumerate(("covid", "normal", "pneumonia")):
        features = rng.normal(label, 1.0, (per_class, n_features))
        sio.savemat(str(folder / f"{name}.mat"), {name: np.hstack([features, np.full((per_class, 1), label)])})
    return folder


@pytest.mark.slow
def test_pytorch_covid_xray_split_prepare_and_learn(tmp_path):
    from colearn_pytorch import pytorch_covid_xray

    folders = pytorch_covid_xray.split_to_folders(str(covid_mat_files(tmp_path / "covid")), 3, shuffle_seed=0,
                                                  output_folder=tmp_path / "split")
    data = np.load(Path(folders[0]) / "data.npy")
    assert data.shape == (30, 64) and data.dtype == np.float32
    loaders = pytorch_covid_xray.prepare_data_loaders(folders[0], batch_size=4)
    learner = pytorch_covid_xray.prepare_learner(loaders, steps_per_epoch=3, vote_batches=2)
    assert learner.criterion_name == "categorical_accuracy"
    one_round(learner)


# ---- the fraud data set and the demo helpers --------------------------------------------------------------
def fraud_csvs(folder: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    rows = ["TransactionID,isFraud,TransactionDT,TransactionAmt,card4"]
    for i in range(n):
        rows.append(f"{i},{int(i % 4 == 0)},{1000 + (i * 7) % n},{rng.gamma(2, 30):.2f},{['visa', 'amex'][i % 2]}")
    (folder / "train_transaction.csv").write_text("\n".join(rows) + "\n")
    ids = ["TransactionID,id_12,DeviceType"] + [f"{i},{['Found', 'NotFound'][i % 3 == 0]},mobile" for i in range(0, n, 2)]
    (folder / "train_identity.csv").write_text("\n".join(ids) + "\n")
    return folder


def test_fraud_dataset_split_prepare_and_learn(tmp_path):
    from colearn_other import fraud_dataset

    source = fraud_csvs(tmp_path / "fraud")
    folders = get_split_to_folders("FRAUD")(str(source), 2, shuffle_seed=0, output_folder=tmp_path / "split")
    assert (source / "data.npy").is_file()  # 0.2.x's preprocessing cache
    (train_x, train_y), (vote_x, _), (test_x, _) = fraud_dataset.prepare_data_loaders(folders[0])
    assert train_x.shape == (16, 4) and len(vote_x) == 2 and len(test_x) == 2
    learner = fraud_dataset.prepare_learner(fraud_dataset.prepare_data_loaders(folders[0], vote_ratio=0.15),
                                            batch_size=8, seed=0)
    one_round(learner)
    weights = learner.mli_get_current_weights()
    weights.weights["coef_"][:] = 99.0  # a copy: the learner's model is untouched (0.2.x aliased it)
    assert not np.any(learner.model.coef_ == 99.0)
    assert get_score_name("FRAUD") == "accuracy" and get_score_name("PYTORCH_XRAY") == "auc"
    assert get_score_name("KERAS_MNIST") == "categorical_accuracy" and get_score_name("other") == "loss"
    with pytest.raises(NotImplementedError, match="NOPE"):
        get_split_to_folders("NOPE")


def test_missing_remote_and_pickled_data_give_clear_errors(tmp_path):
    from colearn_other import fraud_dataset

    with pytest.raises(TaskDataError, match="data_dir is required.*downloads nothing"):
        fraud_dataset.split_to_folders(None, 2)
    with pytest.raises(TaskDataError, match="lacks.*train_identity.csv"):
        fraud_dataset.split_to_folders(str(tmp_path), 2)
    with pytest.raises(DownloadNotSupportedError, match="gs://bucket/fraud"):
        fraud_dataset.prepare_data_loaders("gs://bucket/fraud")
    with pytest.raises(TaskDataError, match="not a local folder"):
        fraud_dataset.prepare_data_loaders(str(tmp_path / "nowhere"))
    with pytest.raises(TaskDataError, match="data.npy is missing; run .*split_to_folders"):
        fraud_dataset.prepare_data_loaders(str(tmp_path))
    # a folder 0.2.x wrote holds pickles: they are refused, never loaded
    canary = tmp_path / "canary"

    @dataclass
    class Bomb:
        def __reduce__(self):
            return (Path.touch, (canary,))

    (tmp_path / "data.pickle").write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(TaskDataError, match="0.2.x pickle.*re-run"):
        fraud_dataset.prepare_data_loaders(str(tmp_path))
    assert not canary.exists()


# ---- PyTorch weights across process and machine boundaries ------------------------------------------------
@dataclass(frozen=True)
class CovidLearnerFactory:
    """Picklable: builds a COVID X-ray learner from a learner folder (in a worker process or a server)."""

    folder: str

    def __call__(self):
        import torch

        from colearn_pytorch import pytorch_covid_xray

        torch.manual_seed(0)  # a common starting model
        loaders = pytorch_covid_xray.prepare_data_loaders(self.folder, batch_size=4)
        return pytorch_covid_xray.prepare_learner(loaders, steps_per_epoch=2, vote_batches=2)


@pytest.mark.slow
def test_pytorch_learners_in_worker_processes_exchange_typed_arrays(tmp_path):
    from colearn.backends.processes import ProcessBackend
    from colearn.experiment import Experiment
    from colearn.protocol import ProtocolConfig

    folders = __import__("colearn_pytorch.pytorch_covid_xray", fromlist=["x"]).split_to_folders(
        str(covid_mat_files(tmp_path / "covid")), 2, shuffle_seed=0, output_folder=tmp_path / "split")
    with ProcessBackend([CovidLearnerFactory(f) for f in folders], timeout=120) as backend:
        results = Experiment(backend, ProtocolConfig()).run(2)
        current = backend.current_weights(0)
    for record in results.rounds:  # tensors went out of each worker as typed arrays and were accepted
        assert record.proposer_error is None and not any(record.vote_errors) and not any(record.accept_errors)
        assert record.proposal_bytes > 0 and record.approvals + record.rejections == 1
    assert isinstance(current, Weights) and isinstance(current.weights["fc1.weight"], np.ndarray)  # decoded arrays
    assert current.weights["fc1.weight"].shape == (256, 64)


@pytest.mark.slow
def test_pytorch_task_served_by_colearn_grpc_and_driven_by_the_client(tmp_path):
    import colearn_pytorch.pytorch_covid_xray  # noqa: F401  (registers PYTORCH_COVID_XRAY)
    from colearn.training import collective_learning_round, initial_result, set_equal_weights
    from colearn_grpc.example_grpc_learner_client import ExampleGRPCLearnerClient
    from colearn_grpc.example_mli_factory import ExampleMliFactory
    from colearn_grpc.grpc_server import GRPCServer

    folders = colearn_pytorch.pytorch_covid_xray.split_to_folders(
        str(covid_mat_files(tmp_path / "covid")), 2, shuffle_seed=0, output_folder=tmp_path / "split")
    servers, clients = [], []
    try:
        for index, folder in enumerate(folders):
            server = GRPCServer(ExampleMliFactory(), port=0)
            server.run(wait_for_termination=False)
            servers.append(server)
            client = ExampleGRPCLearnerClient(f"covid_{index}", f"127.0.0.1:{server.port}")
            client.start()
            clients.append(client)
            assert client.setup_ml("PYTORCH_COVID_XRAY", json.dumps({"location": folder, "batch_size": 4}),
                                   "PYTORCH_COVID_XRAY", json.dumps({"steps_per_epoch": 2, "vote_batches": 2}))
        set_equal_weights(clients)  # tensors on the server, typed arrays on the wire
        initial_result(clients)
        results = [collective_learning_round(clients, 0.5, r) for r in range(2)]
        assert [r.block_proposer for r in results] == [0, 1]
        held = [c.mli_get_current_weights().weights for c in clients]
        assert all(np.array_equal(held[0][k], held[1][k]) for k in held[0])  # everyone holds the same model
    finally:
        for client in clients:
            client.stop()
        for server in servers:
            server.stop()


def test_older_0_2_x_call_forms_still_work(tmp_path):
    from colearn_other import fraud_dataset

    folders = fraud_dataset.split_to_folders(str(fraud_csvs(tmp_path / "fraud")), 1, data_split=[1.0],
                                             shuffle_seed=0, output_folder=tmp_path / "split")
    train, vote, test = fraud_dataset.prepare_data_loaders(train_folder=folders[0], train_ratio=0.5, vote_ratio=0.25)
    assert (len(train[0]), len(vote[0]), len(test[0])) == (20, 10, 10)
    learner = fraud_dataset.prepare_learner((train, test), batch_size=8, seed=0)  # 0.2.x's (train, test) pair
    assert np.array_equal(learner.vote_data, test[0]) and np.array_equal(learner.test_data, test[0])
    one_round(learner)
