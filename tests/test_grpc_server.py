"""The learner server and RemoteLearner in this process (127.0.0.1 only): MLI calls, refusals, security."""
from __future__ import annotations

from typing import Iterator, List

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from colearn.encoding import encode_weights, weights_digest  # noqa: E402
from colearn.grpc import PROTOCOL_VERSION  # noqa: E402
from colearn.grpc.chunking import blob_chunks  # noqa: E402
from colearn.grpc.client import RemoteLearner, RemoteLearnerError  # noqa: E402
from colearn.grpc.protos import learner_pb2 as pb  # noqa: E402
from colearn.grpc.protos import learner_pb2_grpc as pb_grpc  # noqa: E402
from colearn.grpc.security import ClientTLS, ServerTLS, make_self_signed  # noqa: E402
from colearn.grpc.server import LearnerServer, serve  # noqa: E402
from colearn.ml_interface import ModelFormat, Weights  # noqa: E402
from tests.grpc_learners import SoftmaxLearner, learner_datas  # noqa: E402

TOKEN = "a-shared-secret-token"


class Counting(SoftmaxLearner):
    """Counts the MLI calls that reach the learner (refused calls must not)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: List[str] = []

    def mli_test_weights(self, weights):
        self.calls.append("test")
        return super().mli_test_weights(weights)

    def mli_accept_weights(self, weights):
        self.calls.append("accept")
        return super().mli_accept_weights(weights)


@pytest.fixture(scope="module")
def data():
    return learner_datas(5, 0)


@pytest.fixture
def learner(data) -> Counting:
    return Counting(data[0], seed=1)


@pytest.fixture
def server(learner: Counting) -> Iterator[LearnerServer]:
    with serve(learner, "127.0.0.1", 0, tokens=[TOKEN, "another-token"], max_bytes=64 * 1024) as running:
        yield running


def stub_for(server: LearnerServer) -> pb_grpc.LearnerStub:
    return pb_grpc.LearnerStub(grpc.insecure_channel(server.address))


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def test_every_mli_call_round_trips(server: LearnerServer, learner: Counting, data) -> None:
    remote = RemoteLearner(server.address, token=TOKEN, timeout=30)
    info = remote.info()
    assert info["protocol_version"] == PROTOCOL_VERSION and info["healthy"] and info["max_bytes"] == 64 * 1024
    twin = SoftmaxLearner(data[0], seed=1)  # the same learner in this process
    proposal = remote.mli_propose_weights()
    assert weights_digest(proposal.weights) == weights_digest(twin.mli_propose_weights().weights)
    verdict = remote.mli_test_weights(proposal)
    local = twin.mli_test_weights(proposal)
    assert (verdict.vote, verdict.vote_score, verdict.test_score) == (local.vote, local.vote_score, local.test_score)
    assert verdict.criterion == "accuracy" and verdict.weights is proposal
    remote.mli_accept_weights(proposal)
    assert weights_digest(remote.mli_get_current_weights().weights) == weights_digest(proposal.weights)
    model = remote.mli_get_current_model()
    assert model.model_format == ModelFormat.WEIGHTS_ONLY
    assert weights_digest(model.model) == weights_digest(proposal.weights)
    assert learner.calls == ["test", "accept"]
    remote.close()


def bad_streams(learner: Counting) -> dict:
    good = learner.mli_get_current_weights().weights
    blob = encode_weights(good)
    tampered = bytearray(blob)
    tampered[-3] ^= 0x55

    def stream(payload: bytes, version: int = PROTOCOL_VERSION, total: int | None = None) -> List[pb.Chunk]:
        chunks = list(blob_chunks(payload, chunk_size=1000))
        chunks[0].header.protocol_version = version
        if total is not None:
            chunks[0].header.total_bytes = total
        return chunks

    wrong_shape = {"W": np.zeros((10, 64)), "b": good["b"]}
    wrong_dtype = {"W": good["W"].astype(np.float32), "b": good["b"]}
    return {
        "truncated": (stream(blob)[:-1], grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
        "no header": (stream(blob)[1:], grpc.StatusCode.INVALID_ARGUMENT, "header"),
        "garbage": (stream(b"not weights at all"), grpc.StatusCode.INVALID_ARGUMENT, "magic"),
        "checksum": (stream(bytes(tampered)), grpc.StatusCode.INVALID_ARGUMENT, "checksum"),
        "too large": (stream(encode_weights(np.zeros(20_000))), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
        "lying size": (stream(blob, total=10**9), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
        "version": (stream(blob, version=PROTOCOL_VERSION + 1), grpc.StatusCode.FAILED_PRECONDITION, "version"),
        "shape": (stream(encode_weights(wrong_shape)), grpc.StatusCode.INVALID_ARGUMENT, "float64[10, 64]"),
        "dtype": (stream(encode_weights(wrong_dtype)), grpc.StatusCode.INVALID_ARGUMENT, "float32"),
    }


@pytest.mark.parametrize("call", ["TestWeights", "AcceptWeights"])
def test_untrusted_streams_get_clear_statuses_and_change_nothing(server: LearnerServer, learner: Counting,
                                                                 call: str) -> None:
    stub = stub_for(server)
    before = weights_digest(learner.mli_get_current_weights().weights)
    for name, (chunks, code, message) in bad_streams(learner).items():
        with pytest.raises(grpc.RpcError) as info:
            getattr(stub, call)(iter(chunks), metadata=AUTH, timeout=30)
        assert info.value.code() == code, name
        assert message in info.value.details(), (name, info.value.details())
    assert weights_digest(learner.mli_get_current_weights().weights) == before
    assert learner.calls == []


def test_unary_calls_refuse_another_protocol_version(server: LearnerServer) -> None:
    stub = stub_for(server)
    for call in ("ProposeWeights", "GetCurrentWeights", "GetCurrentModel"):
        with pytest.raises(grpc.RpcError) as info:
            list(getattr(stub, call)(pb.CallRequest(protocol_version=PROTOCOL_VERSION + 1), metadata=AUTH))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "version" in info.value.details()


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),),
                                      (("authorization", f"Bearer {TOKEN}x"),)])
def test_missing_or_wrong_tokens_are_unauthenticated_and_change_nothing(server: LearnerServer, learner: Counting,
                                                                        metadata) -> None:
    stub = stub_for(server)
    proposal = learner.mli_propose_weights()
    before = weights_digest(learner.mli_get_current_weights().weights)
    calls = [lambda: stub.AcceptWeights(blob_chunks(encode_weights(proposal.weights)), metadata=metadata),
             lambda: stub.TestWeights(blob_chunks(encode_weights(proposal.weights)), metadata=metadata),
             lambda: list(stub.ProposeWeights(pb.CallRequest(protocol_version=PROTOCOL_VERSION), metadata=metadata)),
             lambda: stub.Info(pb.CallRequest(), metadata=metadata)]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert weights_digest(learner.mli_get_current_weights().weights) == before and learner.calls == []
    # either accepted token works
    assert RemoteLearner(server.address, token="another-token").info()["healthy"]


def test_learner_errors_become_statuses(data) -> None:
    class Broken(SoftmaxLearner):
        def mli_propose_weights(self):
            raise RuntimeError("out of memory, say")

    with serve(Broken(data[1], seed=0)) as running:
        remote = RemoteLearner(running.address)
        with pytest.raises(RemoteLearnerError, match="INTERNAL: learner raised RuntimeError: out of memory") as info:
            remote.mli_propose_weights()
        assert info.value.kind == "error" and info.value.code == grpc.StatusCode.INTERNAL
        with pytest.raises(RemoteLearnerError, match="INVALID_ARGUMENT") as info:
            remote.mli_accept_weights(Weights(weights={"W": np.zeros(3)}))
        assert remote.info()["healthy"]  # still serving


def test_tls_and_mutual_tls(tmp_path, data) -> None:
    cert, key = make_self_signed(tmp_path, name="server")
    client_cert, client_key = make_self_signed(tmp_path, name="client")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    tls = ServerTLS(str(cert), str(key), client_ca_file=str(client_cert))
    with serve(SoftmaxLearner(data[2], seed=0), tls=tls, tokens=[TOKEN]) as running:
        assert running.tls
        mutual = ClientTLS(ca_file=str(cert), cert_file=str(client_cert), key_file=str(client_key))
        assert RemoteLearner(running.address, tls=mutual, token=TOKEN).info()["healthy"]
        localhost = f"localhost:{running.port}"
        assert RemoteLearner(localhost, tls=mutual, token=TOKEN).mli_get_current_weights() is not None
        for refused in (RemoteLearner(running.address, tls=ClientTLS(ca_file=str(cert)), token=TOKEN, timeout=5),
                        RemoteLearner(running.address, token=TOKEN, timeout=5)):  # no client cert; plaintext
            with pytest.raises(RemoteLearnerError) as info:
                refused.info()
            assert info.value.kind == "crashed"  # the handshake fails: nothing was reached


def test_insecure_setups_off_loopback_are_refused_before_binding(data) -> None:
    learner = SoftmaxLearner(data[0], seed=0)
    with pytest.raises(ValueError, match="without TLS"):
        serve(learner, "0.0.0.0", 0)
    with pytest.raises(ValueError, match="without authentication"):
        serve(learner, "0.0.0.0", 0, tls=ServerTLS("c", "k"))
    with pytest.raises(ValueError, match="without TLS"):
        RemoteLearner("192.0.2.1:50051")  # refused when built: nothing is contacted
    with pytest.raises(ValueError, match="host:port"):
        RemoteLearner("nowhere")


def test_a_port_in_use_is_an_error(server: LearnerServer, learner: Counting) -> None:
    with pytest.raises(OSError, match="cannot bind"):
        serve(learner, "127.0.0.1", server.port)


@pytest.mark.slow
def test_a_100_mb_model_streams_in_chunks(data) -> None:
    big = SoftmaxLearner(data[3], seed=0, extra_params=25_000_000)  # 100 MB of float32 padding
    with serve(big, max_bytes=256 * 1024**2) as running:
        remote = RemoteLearner(running.address, max_bytes=256 * 1024**2, timeout=120)
        proposal = remote.mli_propose_weights()
        assert proposal.weights["pad"].nbytes == 100_000_000
        assert remote.mli_test_weights(proposal).vote is not None
        remote.mli_accept_weights(proposal)
        assert weights_digest(big.weights) == weights_digest(proposal.weights)
        small_client = RemoteLearner(running.address, max_bytes=1024**2, timeout=120)
        with pytest.raises(RemoteLearnerError, match="RESOURCE|limit") as info:
            small_client.mli_get_current_weights()  # the client's own limit protects it too
        assert info.value.kind == "invalid"
