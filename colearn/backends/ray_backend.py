"""Learners as Ray actors (``pip install 'colearn[ray]'``): for experiments that outgrow one machine.

Each learner is an actor built on the cluster from the same picklable factory the process backend
uses, with its own resource request (``num_cpus_per_learner``, ``num_gpus_per_learner``). A proposal
is encoded once (:func:`colearn.encoding.encode_weights`) and lives in Ray's object store: the
proposer's result *is* that object, and voters receive it by reference (same-node readers map it
without a copy) and decode it with :func:`~colearn.encoding.decode_weights`. Voters score concurrently.

Failure rules are those of :class:`~colearn.backends.processes.ProcessBackend`: a learner that raises
is a ``"error"`` Failure; a dead actor is ``"crashed"``; one that does not answer within ``timeout``
seconds is ``"timeout"`` and is killed; with ``restart=True`` a lost actor is rebuilt from its factory
when next needed (at most ``max_restarts`` times) and adopts the most recently accepted weights.

Ray is started locally (``ray_init_options`` go to ``ray.init``) unless it is already running or an
``address`` is given; ``close()`` kills the actors and shuts Ray down only if this backend started it.
"""
from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from colearn.backends._worker import _Decoded, _model_out, _verdict, describe
from colearn.backends.base import Backend, Failure, Outcome
from colearn.backends.shm import WeightsSource, dump_summary, load_summary
from colearn.encoding import decode_weights, encode_weights
from colearn.ml_interface import (ColearnModel, MachineLearningInterface, ModelFormat, ProposalRefused,
                                  ProposedWeights, Weights)

Factory = Callable[[], MachineLearningInterface]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the ray backend needs Ray: pip install 'colearn[ray]'") from exc
    return ray


class LearnerActor:
    """The actor body: one learner, built from its factory where the actor lives."""

    def __init__(self, factory: Factory):
        self.learner = factory()
        self.decoded = _Decoded()

    def pid(self) -> int:
        return os.getpid()

    def _out(self, weights: Any, what: str) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
        if not isinstance(weights, Weights):
            raise TypeError(f"{what} returned {type(weights).__name__}, expected Weights")
        return np.frombuffer(encode_weights(weights.weights), dtype=np.uint8), dump_summary(weights)

    def propose(self) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
        return self._out(self.learner.mli_propose_weights(), "mli_propose_weights")

    def current_weights(self) -> Tuple[np.ndarray, Optional[Dict[str, Any]]]:
        return self._out(self.learner.mli_get_current_weights(), "mli_get_current_weights")

    def _weights(self, key: str, blob: np.ndarray, summary: Optional[Dict[str, Any]]) -> Weights:
        source = WeightsSource(key=key, size=int(blob.nbytes), summary=summary, blob=memoryview(blob))
        return self.decoded.get(source)

    def test(self, key: str, blob: np.ndarray, summary: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        return _verdict(self.learner.mli_test_weights(self._weights(key, blob, summary)))

    def accept(self, key: str, blob: np.ndarray, summary: Optional[Dict[str, Any]]) -> None:
        self.learner.mli_accept_weights(self._weights(key, blob, summary))

    def current_model(self) -> Tuple[int, Optional[str], Optional[bytes]]:
        return _model_out(self.learner.mli_get_current_model())


@dataclass
class _Actor:
    index: int
    factory: Factory
    handle: Any = None
    restarts: int = 0
    dead_reason: Optional[str] = None


@dataclass(frozen=True)
class _Held:
    """Weights already in the object store: ``blob_ref`` holds their encoding."""

    key: str
    blob_ref: Any
    summary: Optional[Dict[str, Any]]


def local_runtime_env() -> Dict[str, Any]:
    """A runtime env that lets local Ray workers import what this driver can (its sys.path)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    existing = os.environ.get("PYTHONPATH")
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else []))}}


LOOPBACK = "127.0.0.1"


def init_local_ray(**options: Any) -> None:
    """Start a local Ray whose workers see this driver's modules (used by tests and benchmarks)."""
    ray = _import_ray()
    options.setdefault("include_dashboard", False)
    options.setdefault("runtime_env", local_runtime_env())
    options.setdefault("_node_ip_address", LOOPBACK)  # a local cluster listens on loopback only
    ray.init(**options)


class RayBackend(Backend):
    """Runs each learner as a Ray actor; see the module docstring for resources and failure rules."""

    name = "ray"

    def __init__(self, factories: Sequence[Factory], *, address: Optional[str] = None,
                 ray_address: Optional[str] = None, num_cpus_per_learner: Optional[float] = None,
                 num_gpus_per_learner: float = 0, timeout: Optional[float] = 60.0,
                 start_timeout: Optional[float] = None, restart: bool = True, max_restarts: int = 3,
                 ray_init_options: Optional[Dict[str, Any]] = None):
        factories = list(factories)
        if not factories:
            raise ValueError("factories: need at least one learner factory")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        if num_cpus_per_learner is not None and num_cpus_per_learner < 0:
            raise ValueError(f"num_cpus_per_learner must be >= 0, got {num_cpus_per_learner!r}")
        if num_gpus_per_learner < 0:
            raise ValueError(f"num_gpus_per_learner must be >= 0, got {num_gpus_per_learner!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        if address and ray_address and address != ray_address:
            raise ValueError("address and ray_address disagree: give one of them")
        ray = self._ray = _import_ray()
        self.timeout = timeout
        self.start_timeout = start_timeout if start_timeout is not None else max(timeout or 0.0, 300.0)
        self.restart, self.max_restarts = restart, max_restarts
        self._keys = itertools.count()
        self._roles: Dict[str, Tuple[Weights, _Held]] = {}
        self._closed = False
        self.started_ray = False
        if not ray.is_initialized():
            options = dict(ray_init_options or {})
            target = address or ray_address
            if target:
                ray.init(address=target, **options)
            else:
                options.setdefault("runtime_env", local_runtime_env())
                options.setdefault("include_dashboard", False)
                options.setdefault("_node_ip_address", LOOPBACK)  # a local cluster listens on loopback only
                ray.init(**options)
            self.started_ray = True
        resources: Dict[str, Any] = {}
        if num_gpus_per_learner:
            resources["num_gpus"] = num_gpus_per_learner
        if num_cpus_per_learner is not None:
            resources["num_cpus"] = num_cpus_per_learner
        self._actor_class = ray.remote(**resources)(LearnerActor) if resources else ray.remote(LearnerActor)
        self._actors = [_Actor(i, factory) for i, factory in enumerate(factories)]
        try:
            self._start(self._actors)
            failed = [a for a in self._actors if a.dead_reason is not None]
            if failed:
                raise RuntimeError("; ".join(f"learner {a.index}: {a.dead_reason}" for a in failed))
        except BaseException:
            self.close()
            raise

    # ---- actor lifecycle --------------------------------------------------------------------
    def _start(self, actors: Sequence[_Actor]) -> None:
        for actor in actors:
            actor.handle, actor.dead_reason = self._actor_class.remote(actor.factory), None
        refs = {actor.handle.pid.remote(): actor for actor in actors}
        answers = self._gather(refs, self.start_timeout)
        for ref, actor in refs.items():
            answer = answers[ref]
            if isinstance(answer, Failure):
                actor.dead_reason = f"could not start: {answer.error}"
                self._kill(actor)

    def _kill(self, actor: _Actor) -> None:
        handle, actor.handle = actor.handle, None
        if handle is not None:
            try:
                self._ray.kill(handle, no_restart=True)
            except Exception:  # already gone
                pass

    def _ensure_alive(self, actor: _Actor) -> Optional[Failure]:
        if actor.dead_reason is None:
            return None
        if not self.restart or actor.restarts >= self.max_restarts:
            return Failure(actor.index, f"actor is down ({actor.dead_reason}); not restarted", "crashed")
        actor.restarts += 1
        self._start([actor])
        if actor.dead_reason is not None:
            return Failure(actor.index, f"actor restart failed: {actor.dead_reason}", "crashed")
        consensus = self._roles.get("consensus")
        if consensus is not None:
            held = consensus[1]
            return self._call([actor.index], "accept", (held.key, held.blob_ref, held.summary)).get(actor.index)
        return None

    # ---- calls ------------------------------------------------------------------------------
    def _gather(self, refs: Dict[Any, _Actor], timeout: Optional[float]) -> Dict[Any, Outcome[Any]]:
        """Wait for every ref until ``timeout``; each answer is its value or a Failure."""
        ray = self._ray
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout) if refs else ([], [])
        done = set(ready)
        answers: Dict[Any, Outcome[Any]] = {}
        for ref, actor in refs.items():
            if ref not in done:
                actor.dead_reason = f"timed out after {timeout:g} s"
                self._kill(actor)
                answers[ref] = Failure(actor.index, f"no answer within {timeout:g} s (actor killed)", "timeout")
                continue
            try:
                answers[ref] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the learner raised
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                answers[ref] = Failure(actor.index, describe(cause).splitlines()[0],
                                       "refused" if isinstance(cause, ProposalRefused) else "error")
            except ray.exceptions.RayError as exc:  # the actor or its node died
                actor.dead_reason = f"died ({type(exc).__name__})"
                self._kill(actor)
                answers[ref] = Failure(actor.index, f"actor of learner {actor.index} died: "
                                                    f"{describe(exc).splitlines()[0]}", "crashed")
        return answers

    def _call(self, learners: Sequence[int], method: str, args: Tuple[Any, ...] = ()) -> Dict[int, Outcome[Any]]:
        if self._closed:
            return {i: Failure(i, "backend is closed", "error") for i in learners}
        results: Dict[int, Outcome[Any]] = {}
        refs: Dict[Any, _Actor] = {}
        for i in learners:
            actor = self._actors[i]
            failure = self._ensure_alive(actor)
            if failure is not None:
                results[i] = failure
                continue
            refs[getattr(actor.handle, method).remote(*args)] = actor
        for ref, answer in self._gather(refs, self.timeout).items():
            results[refs[ref].index] = answer
        return {i: results[i] for i in learners}

    def _fetch(self, learner: int, method: str) -> Outcome[Weights]:
        if self._closed:
            return Failure(learner, "backend is closed", "error")
        actor = self._actors[learner]
        failure = self._ensure_alive(actor)
        if failure is not None:
            return failure
        blob_ref, summary_ref = getattr(actor.handle, method).options(num_returns=2).remote()
        answer = self._gather({summary_ref: actor}, self.timeout)[summary_ref]
        if isinstance(answer, Failure):
            return answer
        try:
            blob = self._ray.get(blob_ref)
            weights = Weights(weights=decode_weights(blob), training_summary=load_summary(answer))
        except ValueError as exc:
            return Failure(learner, f"invalid weights from actor: {exc}", "invalid")
        self._roles["recent"] = (weights, _Held(f"ray-{next(self._keys)}", blob_ref, answer))
        return weights

    def _held(self, weights: Weights) -> Tuple[Optional[_Held], Optional[str]]:
        for held_weights, held in self._roles.values():
            if held_weights is weights:
                return held, None
        try:
            blob = np.frombuffer(encode_weights(weights.weights), dtype=np.uint8)
        except (TypeError, ValueError) as exc:
            return None, f"weights cannot be sent to an actor: {describe(exc)}"
        return _Held(f"ray-{next(self._keys)}", self._ray.put(blob), dump_summary(weights)), None

    def _with_weights(self, weights: Weights, learners: Sequence[int], method: str) -> Dict[int, Outcome[Any]]:
        held, error = self._held(weights)
        if held is None:
            return {i: Failure(i, error or "weights cannot be sent", "invalid") for i in learners}
        if method == "accept":
            self._roles["consensus"] = (weights, held)
        return self._call(learners, method, (held.key, held.blob_ref, held.summary))

    # ---- the Backend interface ----------------------------------------------------------------
    @property
    def n_learners(self) -> int:
        return len(self._actors)

    def propose(self, learner: int) -> Outcome[Weights]:
        return self._fetch(learner, "propose")

    def test(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[ProposedWeights]]:
        answers = self._with_weights(weights, learners, "test")
        out: Dict[int, Outcome[ProposedWeights]] = {}
        for i, answer in answers.items():
            if isinstance(answer, Failure):
                out[i] = answer
                continue
            try:
                out[i] = ProposedWeights(weights=weights, **answer)
            except (TypeError, ValueError) as exc:
                out[i] = Failure(i, f"invalid verdict from actor: {exc}", "invalid")
        return out

    def accept(self, weights: Weights, learners: Sequence[int]) -> Dict[int, Outcome[None]]:
        return self._with_weights(weights, learners, "accept")

    def current_weights(self, learner: int) -> Outcome[Weights]:
        return self._fetch(learner, "current_weights")

    def current_model(self, learner: int) -> Outcome[ColearnModel]:
        answer = self._call([learner], "current_model")[learner]
        if isinstance(answer, Failure):
            return answer
        model_format, model_file, blob = answer
        try:
            model = None if blob is None else decode_weights(blob)
            return ColearnModel(model_format=ModelFormat(model_format), model_file=model_file, model=model)
        except ValueError as exc:
            return Failure(learner, f"invalid model from actor: {exc}", "invalid")

    def actor_pids(self) -> List[Optional[int]]:
        """Process ids of the actors (None for one that is down)."""
        answers = self._call(list(range(self.n_learners)), "pid")
        return [None if isinstance(a, Failure) else a for a in (answers[i] for i in range(self.n_learners))]

    def close(self) -> None:
        """Kill every actor; shut Ray down if this backend started it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._roles.clear()
        for actor in getattr(self, "_actors", []):
            self._kill(actor)
        if self.started_ray and self._ray.is_initialized():
            self._ray.shutdown()
