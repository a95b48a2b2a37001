"""GrpcBackend failure semantics, learner specs for `colearn serve`, and the serve/make-cert commands."""
from __future__ import annotations

import socket
import time

import pytest
from typer.testing import CliRunner

pytest.importorskip("grpc")

from colearn.backends.base import Failure  # noqa: E402
from colearn.cli import app  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.grpc.backend import GrpcBackend  # noqa: E402
from colearn.grpc.factory import LearnerSpec, catalogue, fits, load_entry_point, parse_json_params  # noqa: E402
from colearn.grpc.server import serve  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from colearn.registry import LEARNERS, LearnerSpec as RegistrySpec, register_learner  # noqa: E402
from colearn.runner import RunConfig  # noqa: E402
from tests.grpc_learners import SoftmaxLearner, learner_datas, make_learner  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def data():
    return learner_datas(3, 0)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_learner_that_is_down_abstains_and_the_experiment_goes_on(data) -> None:
    learners = [SoftmaxLearner(d, seed=i) for i, d in enumerate(data)]
    with serve(learners[0]) as first, serve(learners[1]) as second:
        down = f"127.0.0.1:{unused_port()}"
        with GrpcBackend([first.address, second.address, down], timeout=10) as backend:
            results = Experiment(backend, ProtocolConfig(vote_threshold=0.5)).run(3)
            events = list(backend.events)
    assert len(results.rounds) == 3
    assert results.initial_test_scores[2] is None
    r0, r2 = results.rounds[0], results.rounds[2]
    assert r0.proposer == 0 and r0.votes[2] is None and "UNAVAILABLE" in r0.vote_errors[2]
    assert r0.abstentions == 1 and r0.votes[1] is not None
    assert r2.proposer == 2 and r2.proposer_error is not None and not r2.accepted
    assert events and all(e.learner == 2 and e.kind == "crashed" and e.address == down for e in events)


def test_a_slow_voter_times_out_and_abstains(data) -> None:
    with serve(SoftmaxLearner(data[0], seed=0)) as fast, serve(SoftmaxLearner(data[1], seed=0, test_delay=3)) as slow:
        with GrpcBackend([fast.address, slow.address], timeout=0.5) as backend:
            proposal = backend.propose(0)
            verdicts = backend.test(proposal, [0, 1])
    assert not isinstance(verdicts[0], Failure)
    assert isinstance(verdicts[1], Failure) and verdicts[1].kind == "timeout"
    assert "DEADLINE_EXCEEDED" in verdicts[1].error and slow.address in verdicts[1].error


class Timed(SoftmaxLearner):
    """Records when each of its tests ran."""

    def __init__(self, *args, intervals: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.intervals = intervals

    def mli_test_weights(self, weights):
        started = time.monotonic()
        try:
            return super().mli_test_weights(weights)
        finally:
            self.intervals.append((started, time.monotonic()))


def test_voters_are_called_concurrently(data) -> None:
    intervals: list = []
    servers = [serve(Timed(d, seed=0, test_delay=0.5, intervals=intervals)) for d in data]
    try:
        with GrpcBackend([s.address for s in servers], timeout=30) as backend:
            verdicts = backend.test(backend.propose(0), [0, 1, 2])
        assert not any(isinstance(v, Failure) for v in verdicts.values())
        assert len(intervals) == 3
        assert max(start for start, _ in intervals) < min(end for _, end in intervals)  # all three overlapped
    finally:
        for server in servers:
            server.stop()


def test_backend_options_are_validated() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GrpcBackend([])
    with pytest.raises(ValueError, match="2 tokens for 3 addresses"):
        GrpcBackend(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], token=["a", "b"])


def test_from_options_reads_tokens_from_a_file_not_the_config(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("COLEARN_TOKEN", raising=False)
    token_file = tmp_path / "tokens"
    token_file.write_text("# one per learner\nt0\nt1\n")
    backend = GrpcBackend.from_options(["127.0.0.1:1", "127.0.0.1:2"], token_file=str(token_file), timeout=3)
    assert [r.token for r in backend.remotes] == ["t0", "t1"] and backend.remotes[0].timeout == 3
    backend.close()
    monkeypatch.setenv("COLEARN_TOKEN", "shared")
    backend = GrpcBackend.from_options(["127.0.0.1:1", "127.0.0.1:2"])
    assert [r.token for r in backend.remotes] == ["shared", "shared"]
    backend.close()


# ---- learner specs ---------------------------------------------------------------------------

def test_entry_point_specs(data) -> None:
    spec = LearnerSpec(entry_point="tests.grpc_learners:make_learner", params=parse_json_params('{"index": 1}'))
    built = spec.build()
    assert isinstance(built, SoftmaxLearner) and "make_learner" in spec.describe()
    assert built.weights["W"].tolist() == make_learner(1).weights["W"].tolist()
    for target, message in [("nocolon", "module:function"), ("no_such_module_x:f", "cannot import"),
                            ("tests.grpc_learners:nothing", "has no nothing"),
                            ("tests.grpc_learners:SoftmaxLearner.missing", "has no")]:
        with pytest.raises(ValueError, match=message):
            load_entry_point(target)
    with pytest.raises(ValueError, match="not a MachineLearningInterface"):
        LearnerSpec(entry_point="tests.grpc_learners:unused").build()
    with pytest.raises(ValueError, match="--params: expected a JSON object"):
        parse_json_params("[1]", "--params")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_params("{", "--params")


def test_named_specs_build_what_colearn_run_builds() -> None:
    register_learner(RegistrySpec("grpc-test-softmax", "tests.grpc_learners:make_factory_learner", "dev",
                                  "numpy softmax regression (tests)"))
    try:
        config = RunConfig(learner="grpc-test-softmax", n_learners=5, seed=0)
        built = LearnerSpec(run_config=config, index=2).build()
        assert built.weights["W"].tolist() == make_learner(2).weights["W"].tolist()
        with pytest.raises(ValueError, match="index must be in 0..4"):
            LearnerSpec(run_config=config, index=5).build()
    finally:
        LEARNERS.pop("grpc-test-softmax")


def test_the_sgd_learner_served_by_name_is_the_one_colearn_run_builds() -> None:
    pytest.importorskip("colearn_other.sklearn_learner")
    from colearn.encoding import weights_digest
    from colearn.runner import build_learner, load_learner_data

    config = RunConfig(learner="sgd", task="iris", n_learners=3, seed=4)
    served = LearnerSpec(run_config=config, index=1).build()
    in_process = build_learner(config, load_learner_data(config)[1], 1)
    assert weights_digest(served.mli_propose_weights().weights) == weights_digest(
        in_process.mli_propose_weights().weights)


def test_catalogue_lists_models_loaders_and_what_fits() -> None:
    info = catalogue()
    assert set(info["models"]) == set(LEARNERS) and "digits" in info["data_loaders"]
    assert not fits("torch-cnn", None) and fits("torch-cnn", (8, 8)) and fits("sgd", None)
    assert "iris" not in info["compatible"]["keras-cnn"] and "iris" in info["compatible"]["sgd"]


# ---- commands ----------------------------------------------------------------------------------

def test_make_cert_and_serve_list(tmp_path) -> None:
    result = runner.invoke(app, ["make-cert", "--out", str(tmp_path), "--host", "localhost", "--name", "try"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "try.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "try.key").stat().st_mode & 0o077 == 0
    listing = runner.invoke(app, ["serve", "--list"])
    assert listing.exit_code == 0 and "which fit together" in listing.output and "torch-cnn" in listing.output


@pytest.mark.parametrize("args, message", [
    (["--entry-point", "nocolon"], "module:function"),
    (["--entry-point", "tests.grpc_learners:make_learner", "--params", "[]"], "--params"),
    (["--entry-point", "tests.grpc_learners:make_learner", "--cert", "c.pem"], "--cert and --key"),
    (["--learner", "sgd", "--n-learners", "1"], "n_learners"),
    (["--entry-point", "tests.grpc_learners:make_learner", "--host", "0.0.0.0"], "without TLS"),
    (["--entry-point", "tests.grpc_learners:make_learner", "--learner", "sgd"], "drop --entry-point"),
    (["--learner", "sgd", "--params", "{}"], "--params goes with --entry-point"),
])
def test_serve_refuses_bad_options_with_a_message(args, message) -> None:
    result = runner.invoke(app, ["serve", "--port", "0", *args])
    assert result.exit_code == 2 and message in result.output, result.output
