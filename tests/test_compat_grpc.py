"""colearn 0.2.x's colearn_grpc, used as 0.2.x code used it: a factory served by GRPCServer, driven by
ExampleGRPCLearnerClient. Servers bind 127.0.0.1 on free ports and are stopped by the tests."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import colearn.compat  # noqa: F401  (makes colearn_grpc importable from an uninstalled checkout)
from colearn.encoding import WeightsDecodeError
from colearn.ml_interface import DiffPrivConfig, TrainingSummary, DiffPrivBudget, Weights
from colearn.training import collective_learning_round, initial_result, set_equal_weights
from colearn.utils.results import Results
from colearn_grpc.example_grpc_learner_client import ExampleGRPCLearnerClient, GRPCClientException
from colearn_grpc.example_mli_factory import ExampleMliFactory
from colearn_grpc.factory_registry import FactoryRegistry
from colearn_grpc.grpc_server import GRPCServer
from colearn_grpc.mli_factory_interface import MliFactory
from colearn_grpc.utils import (WeightsPart, decode_weights, encode_weights, iterator_to_weights,
                                weights_to_iterator)
from tests.backend_helpers import NumpyRegressionLearner

pytestmark = pytest.mark.timeout(120)


# ---- a factory written the 0.2.x way --------------------------------------------------------------------
class RegressionFactory(MliFactory):
    """Implements exactly the four methods a 0.2.x factory implements."""

    def get_models(self):
        return {"NUMPY_REGRESSION": {"n_features": 20}}

    def get_dataloaders(self):
        return {"NUMPY_SPLIT": {"seed": 0}}

    def get_compatibilities(self):
        return {"NUMPY_REGRESSION": {"NUMPY_SPLIT"}}

    def get_mli(self, model_name, model_params, dataloader_name, dataset_params):
        data = {**self.get_dataloaders()[dataloader_name], **json.loads(dataset_params)}
        model = {**self.get_models()[model_name], **json.loads(model_params)}
        return NumpyRegressionLearner(int(data["location"]), seed=data["seed"], n_features=model["n_features"])


@pytest.fixture
def servers():
    started = []

    def start(factory, **kwargs):
        server = GRPCServer(mli_factory=factory, port=0, **kwargs)
        server.run(wait_for_termination=False)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def clients():
    made = []

    def connect(name, address, **kwargs):
        client = ExampleGRPCLearnerClient(name, address, **kwargs)
        client.start()
        made.append(client)
        return client

    yield connect
    for client in made:
        client.stop()


def run_0_2_x_loop(learners, n_rounds=5, vote_threshold=0.5):
    set_equal_weights(learners)
    results = Results()
    results.data.append(initial_result(learners))
    for round_index in range(n_rounds):
        results.data.append(collective_learning_round(learners, vote_threshold, round_index))
    return results


def test_a_0_2_x_factory_served_by_grpc_server_and_driven_for_5_rounds(servers, clients):
    n_learners = 3
    learners = []
    for index in range(n_learners):
        server = servers(RegressionFactory())
        assert server.host == "127.0.0.1" and server.port > 0  # a free port, loopback only
        client = clients(f"learner_{index}", f"127.0.0.1:{server.port}")
        assert client.get_version() == RegressionFactory().get_version()  # colearn's version
        system = client.get_supported_system()
        assert json.loads(system["model_architectures"]["NUMPY_REGRESSION"]) == {"n_features": 20}
        assert json.loads(system["data_loaders"]["NUMPY_SPLIT"]) == {"seed": 0}
        assert system["compatibilities"] == {"NUMPY_REGRESSION": ["NUMPY_SPLIT"]}
        assert client.setup_ml("NUMPY_SPLIT", json.dumps({"location": str(index)}), "NUMPY_REGRESSION",
                               json.dumps({}))
        learners.append(client)

    remote = run_0_2_x_loop(learners)
    local = run_0_2_x_loop([NumpyRegressionLearner(i) for i in range(n_learners)])

    assert [r.block_proposer for r in remote.data[1:]] == [0, 1, 2, 0, 1]
    assert any(r.vote for r in remote.data[1:])  # proposals were adopted over the wire
    for over_grpc, in_process in zip(remote.data, local.data):  # the wire changes nothing
        assert over_grpc.votes == in_process.votes
        assert over_grpc.test_scores == pytest.approx(in_process.test_scores, rel=1e-12)
    held = [client.mli_get_current_weights().weights["w"] for client in learners]
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 for w in held)  # typed arrays, not bytes
    assert all(np.array_equal(held[0], w) for w in held[1:])


def test_registered_task_is_served_by_example_mli_factory(servers, clients):
    @FactoryRegistry.register_dataloader("TEST_NUMPY_SPLIT")
    def prepare_data_loaders(location: str, seed: int = 0):
        return int(location), seed

    @FactoryRegistry.register_model_architecture("TEST_NUMPY_REGRESSION", ["TEST_NUMPY_SPLIT"])
    def prepare_learner(data_loaders, n_features: int = 20, diff_priv_config=None):
        assert diff_priv_config is None or isinstance(diff_priv_config, DiffPrivConfig)
        index, seed = data_loaders
        return NumpyRegressionLearner(index, seed=seed, n_features=n_features)

    try:
        factory = ExampleMliFactory()
        assert factory.get_models()["TEST_NUMPY_REGRESSION"] == {"n_features": 20, "diff_priv_config": None}
        assert factory.get_dataloaders()["TEST_NUMPY_SPLIT"] == {"seed": 0}
        assert factory.get_compatibilities()["TEST_NUMPY_REGRESSION"] == {"TEST_NUMPY_SPLIT"}
        # parameters the loader does not take are dropped with a warning, as in 0.2.x
        dp = {"target_epsilon": 5.0, "target_delta": 1e-5, "max_grad_norm": 1.0, "noise_multiplier": 1.0}
        mli = factory.get_mli("TEST_NUMPY_REGRESSION", json.dumps({"n_features": 8, "diff_priv_config": dp}),
                              "TEST_NUMPY_SPLIT", json.dumps({"location": "1", "unknown": 3}))
        assert mli.w.shape == (8,)
        with pytest.raises(ValueError, match="model_name 'NOPE'"):
            factory.get_mli("NOPE", "{}", "TEST_NUMPY_SPLIT", "{}")
        with pytest.raises(ValueError, match="dataset_params: not valid JSON"):
            factory.get_mli("TEST_NUMPY_REGRESSION", "{}", "TEST_NUMPY_SPLIT", "{location")

        server = servers(ExampleMliFactory())
        client = clients("one", f"127.0.0.1:{server.port}")
        assert client.setup_ml("TEST_NUMPY_SPLIT", json.dumps({"location": "0"}), "TEST_NUMPY_REGRESSION", "{}")
        proposal = client.mli_propose_weights()
        verdict = client.mli_test_weights(proposal)
        client.mli_accept_weights(proposal)
        assert np.array_equal(client.mli_get_current_weights().weights["w"], proposal.weights["w"])
        assert np.array_equal(server.service.learner.w, proposal.weights["w"])  # the server-side learner
        assert isinstance(verdict.vote, bool)
    finally:
        FactoryRegistry.dataloaders.pop("TEST_NUMPY_SPLIT", None)
        FactoryRegistry.model_architectures.pop("TEST_NUMPY_REGRESSION", None)


def test_calls_before_setup_and_failed_setups_are_refused(servers, clients):
    server = servers(RegressionFactory())
    client = clients("c", f"127.0.0.1:{server.port}")
    with pytest.raises(ConnectionError, match="model not set up"):
        client.mli_propose_weights()
    assert not client.setup_ml("NUMPY_SPLIT", "{}", "NOT_A_MODEL", "{}")  # get_mli raised: False, as in 0.2.x
    assert "INVALID_ARGUMENT" in client.last_error and "NOT_A_MODEL" in client.last_error
    assert not client.setup_ml("NUMPY_SPLIT", "x" * (2 << 20), "NUMPY_REGRESSION", "{}")  # over the size bound
    assert server.service.learner is None
    assert client.setup_ml("NUMPY_SPLIT", json.dumps({"location": "0"}), "NUMPY_REGRESSION", "{}")
    good = client.mli_get_current_weights()
    with pytest.raises(ConnectionError, match="do not fit the model"):  # validated before the learner sees it
        client.mli_accept_weights(Weights(weights={"w": np.zeros(3, dtype=np.float32)}))
    assert np.array_equal(client.mli_get_current_weights().weights["w"], good.weights["w"])


def test_tls_and_tokens(servers, clients, tmp_path):
    from colearn.grpc.security import make_self_signed

    cert, key = make_self_signed(tmp_path)
    server = servers(RegressionFactory(), enable_encryption=True, server_key=str(key), server_crt=str(cert),
                     tokens=["s3cret"])
    address = f"127.0.0.1:{server.port}"
    client = clients("tls", address, enable_encryption=True, ca_file=str(cert), token="s3cret")
    assert client.setup_ml("NUMPY_SPLIT", json.dumps({"location": "0"}), "NUMPY_REGRESSION", "{}")
    assert client.mli_get_current_weights().weights["w"].shape == (20,)
    intruder = ExampleGRPCLearnerClient("x", address, enable_encryption=True, ca_file=str(cert), token="wrong")
    with pytest.raises(GRPCClientException):
        intruder.start(retries=1, retry_interval=0.0)
    intruder.stop()
    with pytest.raises(ValueError, match="ca_file"):
        ExampleGRPCLearnerClient("y", address, enable_encryption=True)


def test_server_refuses_to_listen_off_loopback_without_tls_and_authentication():
    with pytest.raises(ValueError, match="enable_encryption"):
        GRPCServer(RegressionFactory(), port=0, host="0.0.0.0")
    with pytest.raises(ValueError, match="tokens"):
        GRPCServer(RegressionFactory(), port=0, host="0.0.0.0", enable_encryption=True)


# ---- colearn_grpc.utils: 0.2.x's names, the typed codec -------------------------------------------------
class Canary:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/colearn-compat-canary"),))


def test_utils_round_trip_typed_weights_with_their_summary():
    summary = TrainingSummary(dp_budget=DiffPrivBudget(target_epsilon=5, target_delta=1e-5, consumed_epsilon=1,
                                                       consumed_delta=1e-5))
    weights = Weights(weights=[np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2)], training_summary=summary)
    back = decode_weights(encode_weights(weights))
    assert back.training_summary == summary
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, weights.weights))
    parts = list(weights_to_iterator(weights))
    assert iterator_to_weights(reversed(parts)).training_summary == summary  # any order
    raw = iterator_to_weights(iter(parts), decode=False)
    assert raw.weights == encode_weights(weights)


def test_utils_never_unpickle_and_refuse_bad_parts(tmp_path):
    canary = Path("/tmp/colearn-compat-canary")
    canary.unlink(missing_ok=True)
    with pytest.raises(WeightsDecodeError):
        decode_weights(pickle.dumps(Weights(weights=Canary())))
    assert not canary.exists()
    blob = encode_weights(Weights(weights=np.zeros(4)))
    n = len(blob)
    with pytest.raises(ValueError, match="do not cover"):
        iterator_to_weights(iter([WeightsPart(0, n, blob[:10]), WeightsPart(11, n, blob[11:])]))
    with pytest.raises(ValueError, match="does not fit"):
        iterator_to_weights(iter([WeightsPart(0, n, blob), WeightsPart(n - 1, n, b"xx")]))
    with pytest.raises(ValueError, match="max_bytes"):
        iterator_to_weights(iter([WeightsPart(0, 10**9, b"x")]), max_bytes=10**6)
    with pytest.raises(WeightsDecodeError):
        decode_weights(blob[:-1] + bytes([blob[-1] ^ 1]))  # tampered


def test_off_loopback_is_allowed_when_asked_explicitly():
    server = GRPCServer(RegressionFactory(), port=0, host="0.0.0.0", allow_insecure=True,
                        allow_unauthenticated=True)  # constructed only: tests never bind beyond 127.0.0.1
    assert server.server is None and server.address == "0.0.0.0:0"
