"""GrpcBackend: the protocol drives learners on other hosts through their learner servers.

Voters (and acceptors) are called concurrently from a thread pool; each call has a timeout. A learner
that is down, times out or disconnects mid-stream becomes a :class:`~colearn.backends.base.Failure`
(an abstention for that round) whose message names the address and what happened; its channel is
dropped, so the next round reconnects and a restarted server rejoins.

A restarted server is not the learner it was: it was rebuilt and holds its initial weights. The backend pins
each server's instance id on first contact, so every later call names it and a restarted server refuses it;
the backend then re-syncs that learner (sends it the weights last accepted, which the driver's record says it
holds) and repeats the call. With no accepted weights yet, a learner that restarted with the same initial
weights (same digest) is in sync; one that did not is out of sync: its test calls are failures (a vote
against an unknown model means nothing) until it accepts weights again. Every restart is a ``restarted``
event in :attr:`GrpcBackend.events`; results never carry a stale learner's scores as if nothing happened.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from colearn.backends.base import Backend, Failure, Outcome
from colearn.encoding import WeightsEncodeError, encode_weights, weights_digest
from colearn.grpc.chunking import DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BYTES, WIRE_DIGEST
from colearn.grpc.client import RemoteLearner, RemoteLearnerError, ServerRestartedError
from colearn.grpc.security import ClientTLS, resolve_tokens
from colearn.ml_interface import ColearnModel, ProposedWeights, Weights

log = logging.getLogger(__name__)
R = TypeVar("R")


class LearnersUnreachable(ConnectionError):
    """Learner servers did not answer at the start of a run (the message names each and the likely cause)."""


def speaks_tls(address: str, timeout: float = 3.0) -> bool:
    """Whether the server at ``host:port`` completes a TLS handshake (certificate unchecked: this only tells a
    plaintext client why a TLS server did not answer; no data is sent)."""
    from colearn.grpc.security import split_address

    host, port = split_address(address)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class CallEvent:
    """A failed call, or a server found restarted (``kind`` "restarted"), as the backend saw it (kept in
    :attr:`GrpcBackend.events`)."""

    time: float
    learner: int
    address: str
    call: str
    kind: str
    error: str


class GrpcBackend(Backend):
    """Reaches one learner server per address (``host:port``), in order: learner ``i`` is ``addresses[i]``.

    ``token`` is one shared bearer token or one per address; ``tls`` is a :class:`ClientTLS` for all.
    ``timeout`` bounds each call in seconds (``propose_timeout`` the proposer's training).
    """

    name = "grpc"

    def __init__(self, addresses: Sequence[str], *, timeout: Optional[float] = 60.0,
                 propose_timeout: Optional[float] = None, tls: Optional[ClientTLS] = None,
                 token: Union[None, str, Sequence[Optional[str]]] = None, max_workers: Optional[int] = None,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, max_bytes: int = DEFAULT_MAX_BYTES,
                 allow_insecure: bool = False):
        if not addresses:
            raise ValueError("addresses must name at least one learner server (host:port)")
        tokens = [token] * len(addresses) if token is None or isinstance(token, str) else list(token)
        if len(tokens) != len(addresses):
            raise ValueError(f"token: got {len(tokens)} tokens for {len(addresses)} addresses")
        self.remotes = [RemoteLearner(address, tls=tls, token=t, timeout=timeout, propose_timeout=propose_timeout,
                                      chunk_size=chunk_size, max_bytes=max_bytes, allow_insecure=allow_insecure)
                        for address, t in zip(addresses, tokens)]
        self.events: List[CallEvent] = []
        self._events_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_workers or max(1, len(addresses)),
                                        thread_name_prefix="colearn-grpc")
        self._closed = False
        self._last_blob: Optional[Tuple[Weights, bytes]] = None
        self._accepted: Optional[Weights] = None  # the weights last accepted: what a restarted learner gets
        self._initial: Dict[int, str] = {}  # digests of the weights learners held before anything was accepted
        self._unsynced: set[int] = set()  # restarted learners whose held model is unknown

    @classmethod
    def from_options(cls, addresses: Sequence[str] = (), *, token_file: Optional[str] = None, ca_file: Optional[str] = None,
                     cert_file: Optional[str] = None, key_file: Optional[str] = None,
                     server_name: Optional[str] = None, servers: Any = None, **options: Any) -> "GrpcBackend":
        """Build from plain options (a RunConfig's backend_options): paths, never secrets.

        Tokens come from ``token_file`` (one line per address, or one shared line) or ``$COLEARN_TOKEN``.
        ``servers`` is what the servers reported at the start (:meth:`check_reachable`), kept for the record.
        """
        if not addresses:
            raise ValueError("the grpc backend needs backend_options.addresses: the learner servers' host:port "
                             "(colearn run --learners host:port,...)")
        tokens = resolve_tokens(token_file)
        token: Union[None, str, List[Optional[str]]] = None
        if len(tokens) == 1:
            token = tokens[0]
        elif tokens:
            token = list(tokens)
        tls = None
        if ca_file or cert_file:
            tls = ClientTLS(ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name)
        return cls(list(addresses), tls=tls, token=token, **options)

    @property
    def n_learners(self) -> int:
        return len(self.remotes)

    @property
    def addresses(self) -> List[str]:
        return [remote.address for remote in self.remotes]

    def _call(self, learner: int, call: str, action: Callable[[RemoteLearner], R]) -> Outcome[R]:
        remote = self.remotes[learner]
        try:
            if remote.instance_id is None:
                remote.pin_instance()
            if learner in self._unsynced and call != "accept":
                self._resync(learner, call)
            try:
                result = action(remote)
            except ServerRestartedError as exc:
                self._note(learner, "restarted", call, str(exc))
                self._unsynced.add(learner)
                remote.pin_instance()
                if call != "accept":  # an accept re-syncs it by itself
                    self._resync(learner, call)
                result = action(remote)
            if call == "accept":
                self._unsynced.discard(learner)
            return result
        except RemoteLearnerError as exc:
            failure = Failure(learner, str(exc), exc.kind)  # type: ignore[arg-type]
        except Exception as exc:  # anything else is still this learner's failure, never the experiment's
            failure = Failure.from_exception(learner, exc)
        self._note(learner, failure.kind, call, failure.error)
        if failure.kind in ("crashed", "timeout"):
            remote.reconnect()  # a fresh channel next round, so a restarted server rejoins at once
        log.warning("learner %d (%s) %s failed: %s", learner, remote.address, call, failure.error)
        return failure

    def _note(self, learner: int, kind: str, call: str, error: str) -> None:
        with self._events_lock:
            self.events.append(CallEvent(time.time(), learner, self.remotes[learner].address, call, kind, error))

    def _resync(self, learner: int, call: str) -> None:
        """Bring a restarted learner back to what the driver's record says it holds, or raise if impossible."""
        remote, accepted = self.remotes[learner], self._accepted
        if accepted is not None:
            remote.mli_accept_weights(accepted)
            how = "re-synced: sent the weights last accepted"
        elif self._initial.get(learner) == weights_digest(remote.mli_get_current_weights().weights):
            how = "in sync: it holds the same initial weights as before"
        elif call == "test":
            raise RemoteLearnerError(f"{call} at {remote.address}: the server restarted with other initial weights "
                                     f"than it held, and none were accepted yet: its model is unknown", "crashed")
        else:
            return  # proposals and downloads are still what it answers; only its votes are meaningless
        self._unsynced.discard(learner)
        self._note(learner, "restarted", call, how)
        log.warning("learner %d (%s) restarted; %s", learner, remote.address, how)

    def _fan_out(self, learners: Sequence[int], call: str, action: Callable[[RemoteLearner], R]) -> Dict[int, Outcome[R]]:
        futures = {i: self._pool.submit(self._call, i, call, action) for i in learners}
        return {i: future.result() for i, future in futures.items()}

    def _encode(self, weights: Weights, learners: Sequence[int]) -> Union[bytes, Dict[int, Outcome[Any]]]:
        """Encode once per proposal: its voters and then its acceptors all get the same blob."""
        cached = self._last_blob
        if cached is not None and cached[0] is weights:
            return cached[1]
        try:
            blob = encode_weights(weights.weights, digest=WIRE_DIGEST)
        except WeightsEncodeError as exc:
            return {i: Failure(i, f"weights cannot be sent: {exc}", "invalid") for i in learners}
        self._last_blob = (weights, blob)
        return blob

    def propose(self, learner: int) -> Outcome[Weights]:
        return self._call(learner, "propose", lambda remote: remote.mli_propose_weights())

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        blob = self._encode(weights, learners)
        if isinstance(blob, dict):
            return blob
        return self._fan_out(learners, "test", lambda remote: remote.mli_test_weights(weights, blob=blob))

    def accept(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[None]]:
        self._accepted = weights
        blob = self._encode(weights, learners)
        if isinstance(blob, dict):
            return blob
        return self._fan_out(learners, "accept", lambda remote: remote.mli_accept_weights(weights, blob=blob))

    def unknown_held(self) -> set[int]:
        """Restarted learners whose model is unknown until they accept weights again."""
        return set(self._unsynced)

    def current_weights(self, learner: int) -> Outcome[Weights]:
        outcome = self._call(learner, "current weights", lambda remote: remote.mli_get_current_weights())
        if self._accepted is None and learner not in self._initial and isinstance(outcome, Weights):
            self._initial[learner] = weights_digest(outcome.weights)  # to recognise it after a restart
        return outcome

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        return self._call(learner, "current model", lambda remote: remote.mli_get_current_model())

    def info(self) -> Dict[int, Outcome[Dict[str, Any]]]:
        """Each server's versions and health (a Failure for one that does not answer)."""
        return self._fan_out(range(self.n_learners), "info", lambda remote: remote.info())

    def check_reachable(self, timeout: float = 10.0) -> List[Dict[str, Any]]:
        """Ask every server for its :meth:`info` before the experiment starts; return what each reports
        (address, learner, versions; not its instance id). Raise :class:`LearnersUnreachable`, one line naming
        each address that does not answer and the likely cause, when any does not: a run whose learners
        cannot be reached would only record rejected rounds."""
        def ask(learner: int) -> Union[Dict[str, Any], Failure]:
            try:
                return self.remotes[learner].info(timeout=timeout)
            except RemoteLearnerError as exc:
                return Failure(learner, str(exc), exc.kind)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001  (reported below, with the address)
                return Failure.from_exception(learner, exc)

        answers = dict(enumerate(self._pool.map(ask, range(self.n_learners))))
        problems = [f"{self.remotes[i].address}: {self._diagnose(i, answer)}"
                    for i, answer in answers.items() if isinstance(answer, Failure)]
        if problems:
            raise LearnersUnreachable("cannot reach the learner servers at the start: " + "; ".join(problems))
        return [{"address": self.remotes[i].address,
                 **{k: v for k, v in answers[i].items() if k != "instance_id"}}  # type: ignore[union-attr]
                for i in range(self.n_learners)]

    def _diagnose(self, learner: int, failure: Failure) -> str:
        remote, error = self.remotes[learner], failure.error
        if "UNAUTHENTICATED" in error or "PERMISSION_DENIED" in error:
            return "the server refused the credentials: check --token-file / $COLEARN_TOKEN (or the client certificate)"
        if remote.tls is None and speaks_tls(remote.address):
            return "the server speaks TLS: pass --ca-cert"
        if remote.tls is not None and any(w in error.lower() for w in ("ssl", "tls", "certificate", "handshake")):
            return f"TLS failed, check --ca-cert (and --client-cert/--client-key for mutual TLS): {error}"
        if failure.kind == "timeout":
            return f"no answer in time ({error})"
        if "connection refused" in error.lower():
            return "connection refused: is `colearn serve` running there?"
        return f"not reachable; is `colearn serve` running there? ({error})"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._last_blob = self._accepted = None
        self._pool.shutdown(wait=True)
        for remote in self.remotes:
            remote.close()
