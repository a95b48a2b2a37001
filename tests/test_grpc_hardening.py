"""Attacks on a learner server, performed (127.0.0.1 only, free ports, bounded in count and time).

Stalled uploads (a slowloris), hostile weights headers, nonsensical start-up settings, a server restarted
between rounds, and an ``Info`` that would show a learner's secret parameters.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from typing import Iterator, List

import numpy as np
import pytest

grpc = pytest.importorskip("grpc")

from colearn.backends.base import Failure  # noqa: E402
from colearn.backends.local import LocalBackend  # noqa: E402
from colearn.encoding import WeightsDecodeError, decode_weights, encode_weights, weights_digest  # noqa: E402
from colearn.experiment import Experiment  # noqa: E402
from colearn.grpc import PROTOCOL_VERSION  # noqa: E402
from colearn.grpc.backend import GrpcBackend  # noqa: E402
from colearn.grpc.chunking import blob_chunks  # noqa: E402
from colearn.grpc.client import RemoteLearner  # noqa: E402
from colearn.grpc.limits import LimitError, ServerLimits  # noqa: E402
from colearn.grpc.protos import learner_pb2 as pb  # noqa: E402
from colearn.grpc.protos import learner_pb2_grpc as pb_grpc  # noqa: E402
from colearn.grpc.server import LearnerServer, serve  # noqa: E402
from colearn.protocol import ProtocolConfig  # noqa: E402
from tests.grpc_learners import SoftmaxLearner, learner_datas, make_learner  # noqa: E402
from tests.grpc_servers import REPO, ServerProcess  # noqa: E402

N = 3
CONFIG = ProtocolConfig(vote_threshold=0.5, seed=0)


@pytest.fixture(scope="module")
def data():
    return learner_datas(N, 0)


def learners(data, seeds=range(N)) -> List[SoftmaxLearner]:
    return [SoftmaxLearner(d, seed=s) for d, s in zip(data, seeds)]


def normalised(results) -> dict:
    out = json.loads(results.to_json(include_timings=False))
    out["backend"], out["versions"] = "?", {}
    return out


# ---- slowloris -------------------------------------------------------------------------------------------

def stall(first_chunk: object, release: threading.Event) -> Iterator[object]:
    """An upload that sends its first chunk (a valid header and some data) and then waits, until released
    (30 s at most): the slowloris."""
    yield first_chunk
    release.wait(30)


def test_16_stalled_uploads_block_neither_info_nor_an_honest_experiment(data, caplog) -> None:
    limits = ServerLimits(max_uploads=4, idle_timeout=3.0)
    honest = learners(data)
    servers = [serve(learner, limits=limits) for learner in honest]
    victim = servers[1]
    release = threading.Event()
    channel = grpc.insecure_channel(victim.address)
    try:
        upload = pb_grpc.LearnerStub(channel).TestWeights
        blob = encode_weights(honest[1].mli_get_current_weights().weights)
        first = next(iter(blob_chunks(blob, chunk_size=len(blob) // 2)))
        attacks = [upload.future(stall(first, release), timeout=20) for _ in range(16)]
        deadline = time.monotonic() + 10
        while sum(a.done() for a in attacks) < 12 and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = [a for a in attacks if a.done()]
        assert len(refused) == 12  # beyond the 4 upload slots: refused at once, no thread waits for a slot
        assert all(a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "server busy" in a.details() for a in refused)

        remote = RemoteLearner(victim.address, timeout=5)
        started = time.monotonic()
        info = remote.info()
        weights = remote.mli_get_current_weights()  # downloads have slots of their own
        answered = time.monotonic() - started
        assert info["healthy"] and weights_digest(weights.weights) == weights_digest(honest[1].weights)
        assert answered < 1.0, f"Info and GetCurrentWeights took {answered:.2f} s during the attack"
        assert sum(not a.done() for a in attacks) == 4  # the four stalls are still holding their slots

        with GrpcBackend([s.address for s in servers], timeout=20) as backend:
            attacked = Experiment(backend, CONFIG).run(3)
            events = list(backend.events)
        for attack in attacks:  # the watchdog cancelled the stalls (after 3 s without data)
            assert attack.exception(timeout=10) is not None
        assert {a.code() for a in attacks} == {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
    finally:
        release.set()
        channel.close()
        for server in servers:
            server.stop(0)
    cancelled = [r.getMessage() for r in caplog.records if r.name == "colearn.grpc.limits"]
    assert len(cancelled) == 4 and all("test upload" in m and "idle_timeout" in m for m in cancelled)
    clean = Experiment(LocalBackend(learners(data)), CONFIG).run(3)
    assert events == [] and normalised(attacked) == normalised(clean)
    assert all(error is None for r in attacked.rounds for error in r.vote_errors)


def test_a_reader_that_stalls_a_download_is_cancelled_and_frees_its_slot(data, caplog) -> None:
    big = SoftmaxLearner(data[0], seed=0, extra_params=10_000_000)  # 40 MB: more than flow control buffers
    limits = ServerLimits(max_downloads=1, idle_timeout=1.0)
    with serve(big, limits=limits, max_bytes=64 * 1024**2) as server:
        channel = grpc.insecure_channel(server.address)
        stalled = pb_grpc.LearnerStub(channel).GetCurrentWeights(pb.CallRequest(protocol_version=PROTOCOL_VERSION),
                                                                 timeout=20)
        try:
            next(stalled)  # one chunk, then nothing more is read: the server's writes block
            remote = RemoteLearner(server.address, max_bytes=64 * 1024**2, timeout=15)
            started = time.monotonic()
            assert remote.info()["healthy"] and time.monotonic() - started < 1.0
            weights = remote.mli_get_current_weights()  # busy until the stalled download is cancelled
            assert weights.weights["pad"].nbytes == 40_000_000
            with pytest.raises(grpc.RpcError) as info:
                list(stalled)
            assert info.value.code() == grpc.StatusCode.CANCELLED
        finally:
            stalled.cancel()
            channel.close()
    cancelled = [r.getMessage() for r in caplog.records if r.name == "colearn.grpc.limits"]
    assert len(cancelled) == 1 and "weights download" in cancelled[0] and "idle_timeout" in cancelled[0]


def test_an_upload_that_trickles_past_the_stream_timeout_is_cancelled(data, caplog) -> None:
    learner = SoftmaxLearner(data[0], seed=0)
    with serve(learner, limits=ServerLimits(idle_timeout=0.5, stream_timeout=1.0)) as server:
        blob = encode_weights(learner.mli_propose_weights().weights)

        def trickle() -> Iterator[object]:  # never idle for 0.5 s, but 40 chunks take 8 s
            for chunk in list(blob_chunks(blob, chunk_size=len(blob) // 40 + 1)):
                yield chunk
                time.sleep(0.2)

        before = weights_digest(learner.weights)
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.LearnerStub(grpc.insecure_channel(server.address)).AcceptWeights(trickle(), timeout=20)
        assert info.value.code() == grpc.StatusCode.CANCELLED and weights_digest(learner.weights) == before
    assert any("stream_timeout" in r.getMessage() for r in caplog.records if r.name == "colearn.grpc.limits")


# ---- hostile headers -------------------------------------------------------------------------------------

def forge(header: dict) -> bytes:
    """A format-2 blob with this JSON header and, if small, the payload and trailer it declares (zeros: the
    header must be refused first)."""
    text = json.dumps(header).encode()
    size = header.get("payload_bytes")
    payload = bytes(size + 32) if type(size) is int and 0 <= size < 1024**2 else b""
    return b"CLW2" + struct.pack(">I", len(text)) + text + payload


def header_with(shape: list, nbytes: int, payload_bytes: int | None = None, **spec: object) -> dict:
    buffer = {"dtype": "<f8", "shape": shape, "offset": 0, "nbytes": nbytes, **spec}
    return {"v": 2, "digest": "sha256", "tree": {"t": "nd", "i": 0}, "buffers": [buffer],
            "payload_bytes": nbytes if payload_bytes is None else payload_bytes}


def many_arrays(count: int) -> dict:
    buffers = [{"dtype": "<f8", "shape": [0], "offset": 0, "nbytes": 0} for _ in range(count)]
    return {"v": 2, "digest": "sha256", "tree": {"t": "list", "items": [{"t": "nd", "i": i} for i in range(count)]},
            "buffers": buffers, "payload_bytes": 0}


HOSTILE = {
    "shape 2**40 x 2**40": (forge(header_with([2**40, 2**40], 2**80 * 8)), "RESOURCE_EXHAUSTED", "limit"),
    "shape 2**40 x 2**40, small payload": (forge(header_with([2**40, 2**40], 2**80 * 8, 64)), "RESOURCE_EXHAUSTED",
                                           "limit"),
    "zero-size, absurd dimension": (forge(header_with([0, 2**70], 0)), "INVALID_ARGUMENT", "absurd dimension"),
    "shape 10.5": (forge(header_with([10.5, 64], 10 * 64 * 8)), "INVALID_ARGUMENT", "not an integer"),
    "shape '10'": (forge(header_with(["10", 64], 10 * 64 * 8)), "INVALID_ARGUMENT", "not an integer"),
    "nbytes true": (forge(header_with([1], True, 8)), "INVALID_ARGUMENT", "not an integer"),
    "buffer not an object": (forge({**header_with([1], 8), "buffers": [[1, 2]]}), "INVALID_ARGUMENT", "malformed"),
    "5000-digit integer": (b"CLW2" + struct.pack(">I", 5024) + b'{"v":2,"payload_bytes":' + b"9" * 5000 + b"}",
                           "INVALID_ARGUMENT", "not valid JSON"),
    "header of 14 MiB": (b"CLW2" + struct.pack(">I", 14 * 1024**2) + b"{" * 4096, "RESOURCE_EXHAUSTED",
                         "max_header_bytes"),
    "200k arrays": (forge(many_arrays(200_000)), "RESOURCE_EXHAUSTED", "max_header_bytes"),
    "101 arrays over a limit of 100": (forge(many_arrays(101)), "RESOURCE_EXHAUSTED", "max_arrays"),
}


@pytest.fixture(scope="module")
def guarded(data) -> Iterator[LearnerServer]:
    with serve(SoftmaxLearner(data[0], seed=0), limits=ServerLimits(max_arrays=100)) as running:
        yield running


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_headers_are_refused_with_a_clear_status(guarded: LearnerServer, name: str) -> None:
    blob, status, message = HOSTILE[name]
    learner = guarded.servicer.mli
    before = weights_digest(learner.weights)
    stub = pb_grpc.LearnerStub(grpc.insecure_channel(guarded.address))
    for call in (stub.TestWeights, stub.AcceptWeights):
        chunks = list(blob_chunks(blob, chunk_size=1024**2))
        with pytest.raises(grpc.RpcError) as info:
            call(iter(chunks), timeout=30)
        assert info.value.code().name == status, (name, info.value.details())
        assert message in info.value.details(), (name, info.value.details())
    assert weights_digest(learner.weights) == before and RemoteLearner(guarded.address).info()["healthy"]
    with pytest.raises(WeightsDecodeError):  # the in-memory decoder refuses the same blob
        decode_weights(blob, max_bytes=1024**3)


def test_metadata_with_a_huge_integer_is_invalid(guarded: LearnerServer) -> None:
    blob = encode_weights(guarded.servicer.mli.weights)
    first = pb.Chunk(header=pb.StreamHeader(protocol_version=PROTOCOL_VERSION, total_bytes=len(blob),
                                            metadata_json='{"x": ' + "7" * 5000 + "}"), data=blob)
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.LearnerStub(grpc.insecure_channel(guarded.address)).TestWeights(iter([first]), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in info.value.details()


# ---- start-up settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, says", [
    ("--max-bytes", "0", "--max-bytes must be a positive integer, got 0"),
    ("--port", "70000", "--port must be an integer from 0 (any free port) to 65535, got 70000"),
    ("--port", "-1", "--port must be an integer from 0 (any free port) to 65535, got -1"),
])
def test_serve_refuses_nonsensical_settings_at_start_up(option: str, value: str, says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "colearn.cli", "serve", "--entry-point",
                           "tests.grpc_learners:make_learner", option, value],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: {says}"]


def test_server_limits_name_the_parameter() -> None:
    for bad, parameter in [({"idle_timeout": 0}, "idle_timeout"), ({"stream_timeout": float("inf")}, "stream_timeout"),
                           ({"max_uploads": 4, "max_downloads": 4, "workers": 8}, "workers"),
                           ({"max_arrays": 2.5}, "max_arrays")]:
        with pytest.raises(LimitError, match=parameter) as info:
            ServerLimits(**bad)
        assert info.value.parameter == parameter
    assert ServerLimits(max_uploads=2, max_downloads=3).workers == 9  # more threads than stream slots
    with pytest.raises(LimitError, match="port"):
        serve(make_learner(0), port=70000)


# ---- a server restarted between rounds ---------------------------------------------------------------------

class Restarting:
    """Learner servers in this process; ``restart(i, learner)`` serves a new learner on server i's port."""

    def __init__(self, served: List[SoftmaxLearner]):
        self.servers = [serve(learner) for learner in served]

    def restart(self, index: int, learner: SoftmaxLearner) -> None:
        port = self.servers[index].port
        self.servers[index].stop(0)
        self.servers[index] = serve(learner, port=port)

    def stop(self) -> None:
        for server in self.servers:
            server.stop(0)


def test_a_server_restarted_between_rounds_is_resynced(data) -> None:
    cluster = Restarting(learners(data))
    try:
        with GrpcBackend([s.address for s in cluster.servers], timeout=20) as backend:
            experiment = Experiment(backend, CONFIG)
            experiment.run(3)
            assert experiment.results.n_accepted >= 1
            untrained = SoftmaxLearner(data[1], seed=1)
            cluster.restart(1, untrained)  # rebuilt: it holds its initial weights again
            results = experiment.run(3)
            events = list(backend.events)
        restarted = [e for e in events if e.kind == "restarted"]
        assert restarted and {e.learner for e in events} == {1}
        assert any("re-synced" in e.error for e in restarted)
        # it holds the accepted weights again, so its held score in the results is the truth
        fresh = SoftmaxLearner(data[1], seed=1)
        truth = fresh._accuracy(untrained.weights, data[1].x_test, data[1].y_test)
        assert results.rounds[-1].held_test_scores[1] == pytest.approx(truth)
        assert truth != pytest.approx(fresh._accuracy(fresh.weights, data[1].x_test, data[1].y_test))
    finally:
        cluster.stop()
    uninterrupted = Experiment(LocalBackend(learners(data)), CONFIG).run(6)
    assert normalised(results) == normalised(uninterrupted)


def test_a_restart_with_other_initial_weights_makes_its_votes_failures_until_it_accepts(data) -> None:
    cluster = Restarting(learners(data))
    try:
        with GrpcBackend([s.address for s in cluster.servers], timeout=20) as backend:
            held = [backend.current_weights(i) for i in range(N)]  # pins each instance, remembers its weights
            cluster.restart(2, SoftmaxLearner(data[2], seed=99))  # another model than the one it held
            proposal = backend.propose(0)
            verdicts = backend.test(proposal, [1, 2])
            assert not isinstance(verdicts[1], Failure)
            assert isinstance(verdicts[2], Failure) and "restarted" in verdicts[2].error
            assert isinstance(backend.test(proposal, [2])[2], Failure)  # still unknown
            assert backend.unknown_held() == {2}  # the driver records its held scores as unknown meanwhile
            assert backend.accept(proposal, [0, 1, 2]) == {0: None, 1: None, 2: None}
            assert backend.unknown_held() == set()
            assert not isinstance(backend.test(proposal, [2])[2], Failure)  # in sync again
            same = backend.current_weights(1)
            assert weights_digest(same.weights) == weights_digest(proposal.weights) != weights_digest(held[1].weights)
            assert {(e.learner, e.kind) for e in backend.events} == {(2, "restarted"), (2, "crashed")}
    finally:
        cluster.stop()


# ---- Info and the log do not show parameters ---------------------------------------------------------------

SECRET = "hunter2-do-not-show-me"


def learner_with_password(index: int = 0, password: str = "") -> SoftmaxLearner:
    """An entry point whose parameters hold a secret (say, a database password)."""
    assert password == SECRET
    return make_learner(index)


def test_info_and_the_server_log_do_not_show_the_learners_parameters(tmp_path) -> None:
    params = json.dumps({"index": 0, "password": SECRET})
    server = ServerProcess(tmp_path, "secretive", ["--entry-point",
                                                   "tests.test_grpc_hardening:learner_with_password",
                                                   "--params", params])
    try:
        server.start()
        info = RemoteLearner(server.address, timeout=10).info()
    finally:
        server.stop()
    log = (tmp_path / "secretive.log").read_text()
    assert "learner_with_password(index=..., password=...)" in info["learner"]
    assert SECRET not in info["learner"] and SECRET not in log and "serving" in log
    assert np.isfinite(info["max_bytes"]) and len(info["instance_id"]) == 32
