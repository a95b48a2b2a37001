"""Transfer throughput of the gRPC learner service vs raw gRPC streaming, and round overhead vs in-process.

    python bench/grpc_transfer.py           # 4, 40 and 400 MB models; 10 digits rounds
    python bench/grpc_transfer.py --quick   # 4 and 40 MB; 4 rounds

Transfers: one learner server in a child process (127.0.0.1, plaintext unless --tls). "colearn" is a full typed
transfer of a float32 model (encode + digest + chunks + reassembly + checksum check + decode; download =
current weights, upload = test of the weights, which includes the server's layout check); "raw" streams the
same number of bytes in chunks of the same size through a bare gRPC method with no encoding or checks, with the
same transport options and the same malloc tuning (colearn.grpc.malloc). Each repeat times raw and colearn back
to back (in alternating order); the table shows medians. The trailer digest is colearn's default on the wire
(xxh3-128 where xxhash is installed, else sha256); --digest forces one on both sides.
Round overhead: 5 `sgd` learners on digits served by `colearn serve` processes vs the in-process backend.
Prints a table and writes bench/results/grpc_transfer.json. Timings depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Dict, List

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(REPO))

from colearn.encoding import decode_weights, encode_weights  # noqa: E402
from colearn.grpc import chunking  # noqa: E402
from colearn.grpc.chunking import DEFAULT_CHUNK_SIZE, TRANSPORT_OPTIONS  # noqa: E402
from colearn.grpc.malloc import tune_malloc  # noqa: E402
from colearn.ml_interface import MachineLearningInterface, ProposedWeights, Weights  # noqa: E402

RAW_DOWN = "/bench.Raw/Download"
RAW_UP = "/bench.Raw/Upload"


class BlobLearner(MachineLearningInterface):
    """Holds ``n_bytes`` of float32 weights; proposing returns them; testing only looks at the size."""

    def __init__(self, n_bytes: int = 4_000_000):
        self.weights = {"w": np.random.default_rng(0).standard_normal(n_bytes // 4, dtype=np.float32)}

    def mli_propose_weights(self) -> Weights:
        return Weights(weights=self.weights)

    def mli_test_weights(self, weights: Weights) -> ProposedWeights:
        return ProposedWeights(weights=weights, vote_score=0.0, test_score=0.0, vote=True)

    def mli_accept_weights(self, weights: Weights) -> None:
        self.weights = weights.weights

    def mli_get_current_weights(self) -> Weights:
        return Weights(weights=self.weights)


def make_blob_learner(n_bytes: int = 4_000_000) -> BlobLearner:
    return BlobLearner(n_bytes)


def raw_server(n_bytes: int, chunk_size: int, port_file: str) -> None:
    """A bare gRPC service streaming ``n_bytes`` of the same kind of data (bytes messages, no checks)."""
    tune_malloc()  # as colearn's server does (the client side shares the bench process with RemoteLearner)
    payload = np.random.default_rng(0).standard_normal(n_bytes // 4, dtype=np.float32).tobytes()

    def download(request: bytes, context: Any):
        view = memoryview(payload)
        for start in range(0, len(view), chunk_size):
            yield view[start:start + chunk_size].tobytes()

    def upload(request_iterator: Any, context: Any) -> bytes:
        received = bytearray()
        for chunk in request_iterator:
            received += chunk
        return len(received).to_bytes(8, "big")

    handlers = {"Download": grpc.unary_stream_rpc_method_handler(download),
                "Upload": grpc.stream_unary_rpc_method_handler(upload)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=TRANSPORT_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Raw", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    Path(port_file).write_text(str(port))
    server.wait_for_termination()


def start(args: List[str], workdir: Path, name: str) -> tuple[subprocess.Popen, int]:
    port_file = workdir / f"{name}.port"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, *args, *(["--port-file"] if "serve" in args else []), str(port_file)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.05)
    time.sleep(0.05)
    return proc, int(port_file.read_text())


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


class Paired:
    """Times of raw and typed transfers, repeat by repeat (each repeat runs both back to back, in alternating
    order, so that the machine's drift hits both alike)."""

    def __init__(self, repeats: int, raw, typed):
        self.raw: List[float] = []
        self.typed: List[float] = []
        for i in range(repeats):
            for action, times in ((raw, self.raw), (typed, self.typed))[:: 1 if i % 2 == 0 else -1]:
                times.append(timed(action))

    def ratios(self) -> List[float]:
        """raw time / typed time of each repeat (1.0: as fast as raw streaming)."""
        return [r / t for r, t in zip(self.raw, self.typed)]

    def summary(self, mb: float, name: str) -> Dict[str, Any]:
        ratios = self.ratios()
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        return {f"{name}_s": statistics.median(self.typed), f"raw_{name}_s": statistics.median(self.raw),
                f"{name}_mb_s": mb / statistics.median(self.typed), f"raw_{name}_mb_s": mb / statistics.median(self.raw),
                f"{name}_vs_raw": statistics.median(ratios), f"{name}_vs_raw_quartiles": [low, high],
                f"{name}_times_s": self.typed, f"raw_{name}_times_s": self.raw}


def bench_transfer(n_bytes: int, repeats: int, workdir: Path, tls_args: List[str], client_tls: Any) -> Dict[str, Any]:
    from colearn.grpc.client import RemoteLearner

    learner, port = start(["-m", "colearn.cli", "serve", "--port", "0", "--entry-point",
                           "bench.grpc_transfer:make_blob_learner", "--params", json.dumps({"n_bytes": n_bytes}),
                           "--max-bytes", str(2 * n_bytes + 2**20), *tls_args], workdir, f"learner-{n_bytes}")
    raw, raw_port = start([str(Path(__file__).resolve()), "--raw-server", str(n_bytes)], workdir, f"raw-{n_bytes}")
    try:
        remote = RemoteLearner(f"127.0.0.1:{port}", tls=client_tls, timeout=600, max_bytes=2 * n_bytes + 2**20)
        held: Dict[str, Any] = {}

        def download() -> None:
            held["w"] = remote.mli_get_current_weights()

        download()  # keep the weights for the upload
        blob = encode_weights(held["w"].weights, digest=chunking.WIRE_DIGEST)  # as GrpcBackend: once per proposal
        codec = statistics.median(timed(lambda: decode_weights(encode_weights(held["w"].weights), copy=False))
                                  for _ in range(repeats))
        channel = grpc.insecure_channel(f"127.0.0.1:{raw_port}", options=TRANSPORT_OPTIONS)
        raw_download = channel.unary_stream(RAW_DOWN)
        raw_upload = channel.stream_unary(RAW_UP)

        def raw_down() -> None:
            received = bytearray()
            for chunk in raw_download(b"", timeout=600):
                received += chunk
            assert len(received) >= n_bytes - 4

        payload = np.random.default_rng(0).standard_normal(n_bytes // 4, dtype=np.float32).tobytes()

        def raw_up() -> None:
            view = memoryview(payload)
            raw_upload((view[s:s + DEFAULT_CHUNK_SIZE].tobytes() for s in range(0, len(view), DEFAULT_CHUNK_SIZE)),
                       timeout=600)

        for _ in range(3):  # warm both connections up alike (gRPC sizes its flow-control windows as it goes)
            for action in (raw_down, download, raw_up, lambda: remote.mli_test_weights(held["w"])):
                action()
        down = Paired(repeats, raw_down, download)
        up = Paired(repeats, raw_up, lambda: remote.mli_test_weights(held["w"]))
        up_pre = Paired(repeats, raw_up, lambda: remote.mli_test_weights(held["w"], blob=blob))
        channel.close()
        remote.close()
        held.clear()
    finally:
        for proc in (learner, raw):
            proc.terminate()
            proc.wait(30)
    mb = n_bytes / 1e6
    return {"model_mb": mb, **down.summary(mb, "download"), **up.summary(mb, "upload"),
            **up_pre.summary(mb, "upload_preencoded"), "codec_roundtrip_s": codec, "repeats": repeats}


def bench_rounds(n_rounds: int, workdir: Path) -> Dict[str, Any]:
    from colearn.experiment import Experiment
    from colearn.grpc.backend import GrpcBackend
    from colearn.runner import RunConfig, run

    config = RunConfig(task="digits", learner="sgd", n_learners=5, n_rounds=n_rounds, seed=0)
    local = run(config)
    procs = [start(["-m", "colearn.cli", "serve", "--port", "0", "--learner", "sgd", "--task", "digits",
                    "--n-learners", "5", "--index", str(i), "--seed", "0"], workdir, f"sgd-{i}") for i in range(5)]
    try:
        with GrpcBackend([f"127.0.0.1:{port}" for _, port in procs], timeout=120) as backend:
            remote = Experiment(backend, config.protocol()).run(n_rounds)
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(30)
    local_s = statistics.mean(r.times.total for r in local.rounds)
    remote_s = statistics.mean(r.times.total for r in remote.rounds)
    same = [r.held_test_scores for r in local.rounds] == [r.held_test_scores for r in remote.rounds]
    return {"rounds": n_rounds, "local_round_s": local_s, "grpc_round_s": remote_s,
            "overhead_per_round_s": remote_s - local_s, "same_scores": same}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 and 40 MB only, 4 rounds")
    parser.add_argument("--tls", action="store_true", help="colearn transfers over TLS (raw stays plaintext)")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats of the 400 MB transfers (x2 for 40 MB, "
                        "x5 for 4 MB); medians are shown")
    parser.add_argument("--digest", choices=["xxh3-128", "sha256", "blake3"], help="trailer digest on both sides "
                        "(default: colearn's wire default)")
    parser.add_argument("--raw-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("port_file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_server:
        raw_server(args.raw_server, DEFAULT_CHUNK_SIZE, args.port_file)
        return 0
    if args.digest:
        os.environ["COLEARN_WIRE_DIGEST"] = args.digest  # the learner server is a child process
        chunking.WIRE_DIGEST = args.digest
    sizes = [4_000_000, 40_000_000] + ([] if args.quick else [400_000_000])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tls_args: List[str] = []
        client_tls = None
        if args.tls:
            from colearn.grpc.security import ClientTLS, make_self_signed

            cert, key = make_self_signed(workdir, name="bench")
            tls_args, client_tls = ["--cert", str(cert), "--key", str(key)], ClientTLS(ca_file=str(cert))
        # more repeats for the small models, whose transfers take milliseconds: 4 MB x5, 40 MB x2, 400 MB x1
        transfers = [bench_transfer(n, args.repeats * max(1, round((1e8 / n) ** 0.5)), workdir, tls_args, client_tls)
                     for n in sizes]
        load_after_transfers = os.getloadavg()
        rounds = bench_rounds(4 if args.quick else 10, workdir)
    print(f"digest {chunking.WIRE_DIGEST}, chunks of {DEFAULT_CHUNK_SIZE} bytes, medians of "
          f"{'/'.join(str(t['repeats']) for t in transfers)} paired repeats (ratio: raw time / colearn time, "
          f"median and quartiles of the pairs), "
          f"load average {load_before[0]:.2f} before, {load_after_transfers[0]:.2f} after the transfers "
          f"({os.cpu_count()} cpus)")
    print(f"{'model':>8} {'down MB/s':>10} {'raw':>6} {'ratio (quartiles)':>18} {'up MB/s':>8} {'raw':>6} "
          f"{'ratio (quartiles)':>18} {'pre-encoded up':>18} {'codec ms':>9}")

    def ratio(t: Dict[str, Any], name: str) -> str:
        low, high = t[f"{name}_vs_raw_quartiles"]
        return f"{t[f'{name}_vs_raw']:.2f} ({low:.2f}-{high:.2f})"

    for t in transfers:
        print(f"{t['model_mb']:>6.0f}MB {t['download_mb_s']:>10.0f} {t['raw_download_mb_s']:>6.0f} "
              f"{ratio(t, 'download'):>18} {t['upload_mb_s']:>8.0f} {t['raw_upload_mb_s']:>6.0f} "
              f"{ratio(t, 'upload'):>18} {ratio(t, 'upload_preencoded'):>18} {t['codec_roundtrip_s'] * 1e3:>9.0f}")
    print(f"rounds (5 x sgd on digits, {rounds['rounds']} rounds): in-process {rounds['local_round_s'] * 1e3:.1f} ms, "
          f"grpc {rounds['grpc_round_s'] * 1e3:.1f} ms, overhead {rounds['overhead_per_round_s'] * 1e3:.1f} ms/round, "
          f"same scores: {rounds['same_scores']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "grpc_transfer.json"
    out.write_text(json.dumps({"transfers": transfers, "rounds": rounds, "tls": args.tls, "quick": args.quick,
                               "chunk_size": DEFAULT_CHUNK_SIZE, "cpus": os.cpu_count(), "digest": chunking.WIRE_DIGEST,
                               "repeats": args.repeats, "load_average_before": load_before,
                               "load_average_after_transfers": load_after_transfers,
                               "load_average": os.getloadavg(), "python": platform.python_version(),
                               "grpcio": grpc.__version__}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
