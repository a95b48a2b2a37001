"""The agents' peer service over gRPC: content-addressed blobs, signed votes and published scores.

Each ``colearn agent`` serves the blobs it holds (its proposals and the models it adopted), the votes it signed
and, if it chooses, its scores, with the learner service's security (:mod:`colearn.grpc.security`): TLS or mutual
TLS and bearer tokens, required off loopback. Whatever a peer sends back is untrusted: :class:`PeerClient`
bounds the size before buffering, the time of every call, and returns a blob's bytes only after their sha256
matched the name asked for (nothing is decoded before that); a vote only after its EIP-712 signature recovered
to the learner that should have signed it.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import grpc

from colearn.grpc.security import ClientTLS, ServerTLS, TokenAuthInterceptor, auth_metadata, is_loopback
from colearn.ledger.blobstore import BlobError, BlobIntegrityError, BlobMissingError, BlobStore, normalise_hash
from colearn.ledger.protos import blobs_pb2 as pb
from colearn.ledger.protos import blobs_pb2_grpc as pb_grpc
from colearn.ledger.votes import SignedVote

PIECE_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 1024**3


class PeerError(RuntimeError):
    """A peer could not be reached, refused, or sent something that is not what was asked for."""


class VoteBook:
    """The votes this agent signed and the scores it publishes, kept on disk so that a restarted agent serves
    (and never re-signs differently) the votes it already gave."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, kind: str, round_index: int) -> Path:
        return self.root / f"{kind}-{int(round_index)}.json"

    def _write(self, path: Path, data: dict) -> None:
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        partial.replace(path)

    def put_vote(self, vote: SignedVote) -> None:
        with self._lock:
            self._write(self._path("vote", vote.round_index), vote.to_json())

    def vote(self, round_index: int) -> Optional[SignedVote]:
        path = self._path("vote", round_index)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return SignedVote(data["round"], data["voter"], data["vote"], bytes.fromhex(data["model_hash"][2:]),
                          data["v"], bytes.fromhex(data["r"][2:]), bytes.fromhex(data["s"][2:]))

    def put_scores(self, round_index: int, vote_score: Optional[float], test_score: Optional[float]) -> None:
        with self._lock:
            self._write(self._path("scores", round_index), {"vote_score": vote_score, "test_score": test_score})

    def scores(self, round_index: int) -> Optional[Tuple[Optional[float], Optional[float]]]:
        path = self._path("scores", round_index)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return data["vote_score"], data["test_score"]


class PeerServicer(pb_grpc.PeerServicer):
    """Serves a :class:`BlobStore` and a :class:`VoteBook` to other agents."""

    def __init__(self, store: BlobStore, book: VoteBook, piece_bytes: int = PIECE_BYTES):
        self.store, self.book, self.piece_bytes = store, book, piece_bytes
        self.bytes_sent = 0

    def GetBlob(self, request: pb.BlobRequest, context: grpc.ServicerContext) -> Iterator[pb.BlobPiece]:  # noqa: N802
        if len(request.sha256) != 32:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "sha256 must be 32 bytes")
        try:
            data = self.store.get(request.sha256.hex())  # checked against its name: never serve a corrupt blob
        except BlobMissingError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no blob {request.sha256.hex()}")
        except BlobError as exc:
            context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        view = memoryview(data)
        for start in range(0, max(len(view), 1), self.piece_bytes):
            piece = bytes(view[start: start + self.piece_bytes])
            self.bytes_sent += len(piece)
            yield pb.BlobPiece(total_bytes=len(view) if start == 0 else 0, data=piece)

    def GetVote(self, request: pb.VoteRequest, context: grpc.ServicerContext) -> pb.VoteReply:  # noqa: N802
        vote = self.book.vote(request.round_index)
        if vote is None:
            return pb.VoteReply(found=False)
        return pb.VoteReply(found=True, vote=vote.vote, model_hash=vote.model_hash, v=vote.v, r=vote.r, s=vote.s)

    def GetScores(self, request: pb.ScoresRequest, context: grpc.ServicerContext) -> pb.ScoresReply:  # noqa: N802
        scores = self.book.scores(request.round_index)
        if scores is None:
            return pb.ScoresReply(found=False)
        return pb.ScoresReply(found=True, vote_score=_nan_if_none(scores[0]), test_score=_nan_if_none(scores[1]))


def _nan_if_none(value: Optional[float]) -> float:
    return math.nan if value is None else float(value)


@dataclass
class PeerServer:
    server: grpc.Server
    host: str
    port: int
    servicer: PeerServicer

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"

    def stop(self, grace: Optional[float] = 0.5) -> None:
        self.server.stop(grace).wait()


def serve_peer(store: BlobStore, book: VoteBook, host: str = "127.0.0.1", port: int = 0, *,
               tls: Optional[ServerTLS] = None, tokens: Sequence[str] = (), allow_insecure: bool = False,
               allow_unauthenticated: bool = False, max_workers: int = 4) -> PeerServer:
    """Start the peer service on ``host:port``. Off loopback TLS and a token or client CA are required (as for
    ``colearn serve``) unless explicitly waived."""
    if not is_loopback(host):
        if tls is None and not allow_insecure:
            raise ValueError(f"host: refusing to serve blobs on non-loopback {host!r} without TLS (--cert/--key)")
        if not tokens and (tls is None or tls.client_ca_file is None) and not allow_unauthenticated:
            raise ValueError(f"host: refusing to serve blobs on non-loopback {host!r} without a token or client CA")
    servicer = PeerServicer(store, book)
    interceptors: List[grpc.ServerInterceptor] = [TokenAuthInterceptor(tokens)] if tokens else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=interceptors,
                         options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_PeerServicer_to_server(servicer, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_secure_port(bind, tls.credentials()) if tls else server.add_insecure_port(bind)
    if bound == 0:
        raise OSError(f"cannot bind {bind} (address in use or not available)")
    server.start()
    return PeerServer(server, host, bound, servicer)


class PeerClient:
    """Calls to the peer service at ``address``; every call is bounded by ``timeout`` seconds."""

    def __init__(self, address: str, *, tls: Optional[ClientTLS] = None, token: Optional[str] = None,
                 timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES):
        host = address.rpartition(":")[0].strip("[]")
        if tls is None and not is_loopback(host):
            raise ValueError(f"refusing to reach peer {address} without TLS (give --ca-cert)")
        options = tls.channel_options() if tls else []
        self.channel = grpc.secure_channel(address, tls.credentials(), options=options) if tls \
            else grpc.insecure_channel(address)
        self.stub = pb_grpc.PeerStub(self.channel)
        self.address, self.timeout, self.max_bytes = address, timeout, max_bytes
        self.metadata = auth_metadata(token)
        self.bytes_received = 0

    def close(self) -> None:
        self.channel.close()

    def _fail(self, what: str, exc: grpc.RpcError) -> PeerError:
        code = exc.code().name if hasattr(exc, "code") and exc.code() else "error"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return PeerError(f"{what} from {self.address}: {code}: {details}")

    def fetch_blob(self, digest: Union[str, bytes]) -> bytes:
        """The blob named ``digest``, only once its bytes hash to that name (else :class:`BlobIntegrityError`)."""
        name = normalise_hash(digest)
        parts: List[bytes] = []
        received = 0
        try:
            stream = self.stub.GetBlob(pb.BlobRequest(sha256=bytes.fromhex(name)), timeout=self.timeout,
                                       metadata=self.metadata)
            for number, piece in enumerate(stream):
                if number == 0 and piece.total_bytes > self.max_bytes:
                    stream.cancel()
                    raise PeerError(f"blob {name[:12]}… from {self.address} declares {piece.total_bytes} bytes, "
                                    f"over the limit of {self.max_bytes}")
                received += len(piece.data)
                if received > self.max_bytes:
                    stream.cancel()
                    raise PeerError(f"blob {name[:12]}… from {self.address} exceeds {self.max_bytes} bytes")
                parts.append(piece.data)
        except grpc.RpcError as exc:
            raise self._fail(f"blob {name[:12]}…", exc) from None
        self.bytes_received += received
        data = b"".join(parts)
        actual = hashlib.sha256(data).hexdigest()
        if actual != name:
            raise BlobIntegrityError(f"peer {self.address} sent bytes hashing to {actual[:12]}… for blob "
                                     f"{name[:12]}…: refused")
        return data

    def fetch_vote(self, round_index: int, voter: int) -> Optional[SignedVote]:
        """The vote learner ``voter`` signed in ``round_index`` as its agent serves it (None if not yet)."""
        try:
            reply = self.stub.GetVote(pb.VoteRequest(round_index=round_index), timeout=self.timeout,
                                      metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._fail(f"vote of round {round_index}", exc) from None
        if not reply.found:
            return None
        if len(reply.model_hash) != 32 or len(reply.r) != 32 or len(reply.s) != 32 or reply.v > 255:
            raise PeerError(f"vote of round {round_index} from {self.address} is malformed")
        return SignedVote(round_index, voter, int(reply.vote), bytes(reply.model_hash), int(reply.v),
                          bytes(reply.r), bytes(reply.s))

    def fetch_scores(self, round_index: int) -> Optional[Tuple[Optional[float], Optional[float]]]:
        """The (vote, test) scores the agent published for ``round_index`` (-1: its initial model), if any."""
        try:
            reply = self.stub.GetScores(pb.ScoresRequest(round_index=round_index), timeout=self.timeout,
                                        metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self._fail(f"scores of round {round_index}", exc) from None
        if not reply.found:
            return None
        return tuple(None if not math.isfinite(v) else float(v)  # type: ignore[return-value]
                     for v in (reply.vote_score, reply.test_score))


class PeerDirectory:
    """Clients for the endpoints learners announced on chain (the latest announcement of each wins)."""

    def __init__(self, *, tls: Optional[ClientTLS] = None, token: Optional[str] = None, timeout: float = 30.0,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.tls, self.token, self.timeout, self.max_bytes = tls, token, timeout, max_bytes
        self.endpoints: Dict[int, str] = {}
        self._clients: Dict[int, PeerClient] = {}
        self._received_before = 0  # by clients since replaced

    def announce(self, learner: int, endpoint: str) -> None:
        if self.endpoints.get(learner) != endpoint:
            old = self._clients.pop(learner, None)
            if old is not None:
                self._received_before += old.bytes_received
                old.close()
            self.endpoints[learner] = endpoint

    def client(self, learner: int) -> Optional[PeerClient]:
        """A client for ``learner``'s announced endpoint; None if it announced none or one that cannot be used
        (an endpoint is what a learner wrote on chain: untrusted, like everything a peer sends)."""
        if learner not in self.endpoints:
            return None
        if learner not in self._clients:
            try:
                self._clients[learner] = PeerClient(self.endpoints[learner], tls=self.tls, token=self.token,
                                                    timeout=self.timeout, max_bytes=self.max_bytes)
            except (ValueError, RuntimeError):
                return None
        return self._clients[learner]

    @property
    def bytes_received(self) -> int:
        return self._received_before + sum(c.bytes_received for c in self._clients.values())

    def close(self) -> None:
        for client in self._clients.values():
            self._received_before += client.bytes_received
            client.close()
        self._clients.clear()


__all__ = ["PeerClient", "PeerDirectory", "PeerError", "PeerServer", "PeerServicer", "VoteBook", "serve_peer"]
