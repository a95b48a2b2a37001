"""Weights in POSIX shared memory: one encoded blob per proposal, read by every worker that needs it.

A :class:`WeightsSource` is what travels over a worker's pipe instead of the weights: either the small
encoded blob itself (below a size threshold) or the *name and size* of a shared-memory segment that
holds it. Blobs are made by :func:`colearn.encoding.encode_weights` and read back with
:func:`colearn.encoding.decode_weights`, which validates dtypes, shapes and the checksum: weights are
never pickled. Segment names start with :data:`SEGMENT_PREFIX` and a per-backend token, so the owner
can find and unlink every segment it may have caused, even those a crashed worker half-wrote.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from colearn.encoding import decode_weights, encode_weights
from colearn.ml_interface import TrainingSummary, Weights

SEGMENT_PREFIX = "colearn_"
DEFAULT_SHM_THRESHOLD = 256 * 1024  # blobs smaller than this travel inline over the pipe
SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class WeightsSource:
    """Where a worker finds some weights: ``blob`` inline, or segment ``name`` holding ``size`` bytes."""

    key: str
    size: int
    summary: Optional[Dict[str, Any]] = None
    blob: Optional[bytes] = None
    name: Optional[str] = None

    @property
    def in_shared_memory(self) -> bool:
        return self.name is not None


def new_token() -> str:
    """A fresh token that names one backend's segments (short: macOS allows 31-character names)."""
    return secrets.token_hex(4)


def segment_names(token: str) -> Iterator[str]:
    """Segment names for one owner: ``colearn_<token>_0``, ``colearn_<token>_1``, ..."""
    counter = 0
    while True:
        yield f"{SEGMENT_PREFIX}{token}_{counter}"
        counter += 1


def dump_summary(weights: Weights) -> Optional[Dict[str, Any]]:
    summary = weights.training_summary
    return None if summary is None else summary.model_dump(mode="json")


def load_summary(data: Optional[Dict[str, Any]]) -> Optional[TrainingSummary]:
    return None if data is None else TrainingSummary.model_validate(data)


def write_source(weights: Weights, key: str, name: str, threshold: int) -> WeightsSource:
    """Encode ``weights``; put the blob in a new segment called ``name`` if it is at least ``threshold`` bytes.

    The segment is created, filled and closed here, but not unlinked: whoever receives the source owns it.
    """
    blob = encode_weights(weights.weights)
    summary = dump_summary(weights)
    if len(blob) < threshold:
        return WeightsSource(key=key, size=len(blob), summary=summary, blob=blob)
    segment = shared_memory.SharedMemory(name=name, create=True, size=len(blob))
    try:
        segment.buf[: len(blob)] = blob
    finally:
        segment.close()
    return WeightsSource(key=key, size=len(blob), summary=summary, name=name)


def read_source(source: WeightsSource) -> Weights:
    """Decode the weights a source points at (copies out of the segment, which stays as it is)."""
    if source.blob is not None:
        data = decode_weights(source.blob)
    else:
        data = _decode_segment(source.name or "", source.size)
    return Weights(weights=data, training_summary=load_summary(source.summary))


def _decode_segment(name: str, size: int) -> Any:
    segment = shared_memory.SharedMemory(name=name, create=False)
    error: Optional[str] = None
    data: Any = None
    try:
        if size > segment.size:
            error = f"segment {name} holds {segment.size} bytes, expected {size}"
        else:
            view = segment.buf[:size]
            try:
                data = decode_weights(view)
            except ValueError as exc:  # keep no traceback alive: it would pin the segment's buffer
                error = str(exc)
            finally:
                view.release()
    finally:
        segment.close()
    if error is not None:
        raise ValueError(error)
    return data


def unlink_quietly(name: str) -> bool:
    """Unlink segment ``name`` if it exists; True if it did."""
    try:
        segment = shared_memory.SharedMemory(name=name, create=False)
    except (FileNotFoundError, ValueError, OSError):
        return False
    try:
        segment.unlink()
    except FileNotFoundError:
        return False
    finally:
        segment.close()
    return True


def leftover_segments(prefix: str = SEGMENT_PREFIX) -> list[str]:
    """Names of segments in /dev/shm that start with ``prefix`` (empty where /dev/shm does not exist)."""
    if not SHM_DIR.is_dir():
        return []
    return sorted(path.name for path in SHM_DIR.iterdir() if path.name.startswith(prefix))
