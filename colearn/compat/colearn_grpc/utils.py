"""0.2.x's weight helpers, with its names, on colearn's typed codec (:mod:`colearn.encoding`) instead of pickle.

``encode_weights`` / ``decode_weights`` turn a whole :class:`Weights` (arrays and training summary) into bytes
and back; decoding executes nothing and validates structure, dtypes, sizes and checksum.
``weights_to_iterator`` / ``iterator_to_weights`` cut those bytes into :class:`WeightsPart` s and put them back
together, refusing parts that overlap, leave gaps or exceed the declared or allowed size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from pydantic import ValidationError

from colearn import encoding
from colearn.ml_interface import TrainingSummary, Weights

PART_SIZE = 4 * 10**6  # bytes per part, as in 0.2.x
DEFAULT_MAX_BYTES = encoding.DEFAULT_MAX_BYTES
_KEYS = ["weights", "training_summary"]


@dataclass
class WeightsPart:
    """One slice of encoded weights (0.2.x's protobuf message of the same name and fields)."""

    byte_index: int
    total_bytes: int
    weights: bytes


def encode_weights(w: Weights) -> bytes:
    """Typed, pickle-free bytes of ``w`` (its arrays and its training summary)."""
    summary = w.training_summary.model_dump_json() if w.training_summary is not None else None
    return encoding.encode_weights({"weights": w.weights, "training_summary": summary})


def decode_weights(w: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Weights:
    """The :class:`Weights` behind :func:`encode_weights`' bytes; raises ``ValueError`` on anything else."""
    value = encoding.decode_weights(w, max_bytes=max_bytes)
    if not isinstance(value, dict) or list(value) != _KEYS:
        raise encoding.WeightsDecodeError("w: not encoded Weights (expected the keys weights, training_summary)")
    summary = value["training_summary"]
    if summary is not None:
        if not isinstance(summary, str):
            raise encoding.WeightsDecodeError("w: training_summary is not JSON text")
        try:
            summary = TrainingSummary.model_validate_json(summary)
        except ValidationError as exc:
            raise encoding.WeightsDecodeError(f"w: invalid training_summary: {exc.errors()[0]['msg']}") from None
    return Weights(weights=value["weights"], training_summary=summary)


def iterator_to_weights(request_iterator: Iterable[WeightsPart], decode: bool = True,
                        max_bytes: int = DEFAULT_MAX_BYTES) -> Weights:
    """Reassemble parts (in any order) into the encoded bytes; decode them unless ``decode=False``
    (then ``Weights(weights=<bytes>)``). Parts must tile ``[0, total_bytes)`` exactly."""
    parts = iter(request_iterator)
    first = next(parts, None)
    if first is None:
        raise ValueError("request_iterator: no weights parts")
    total = first.total_bytes
    if not isinstance(total, int) or not 0 < total <= max_bytes:
        raise ValueError(f"request_iterator: total_bytes={total!r} is not in 1..max_bytes={max_bytes}")
    buffer = bytearray(total)
    covered = 0
    seen = []
    for part in (first, *parts):
        end = part.byte_index + len(part.weights)
        if part.total_bytes != total or part.byte_index < 0 or end > total:
            raise ValueError(f"request_iterator: part at byte {part.byte_index} ({len(part.weights)} bytes) does not "
                             f"fit in {total} bytes")
        seen.append((part.byte_index, end))
        buffer[part.byte_index:end] = part.weights
        covered += len(part.weights)
        if covered > total:
            raise ValueError("request_iterator: parts overlap or repeat")
    seen.sort()
    if covered != total or any(a[1] != b[0] for a, b in zip(seen, seen[1:])) or seen[0][0] != 0:
        raise ValueError(f"request_iterator: the parts do not cover the {total} bytes exactly")
    return decode_weights(bytes(buffer), max_bytes) if decode else Weights(weights=bytes(buffer))


def weights_to_iterator(input_weights: Weights, encode: bool = True) -> Iterator[WeightsPart]:
    """Parts of at most :data:`PART_SIZE` bytes of ``input_weights`` encoded (or of its bytes, ``encode=False``)."""
    data = encode_weights(input_weights) if encode else bytes(input_weights.weights)
    for start in range(0, len(data), PART_SIZE):
        yield WeightsPart(byte_index=start, total_bytes=len(data), weights=data[start:start + PART_SIZE])
