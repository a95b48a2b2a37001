"""Typed, pickle-free encoding of weights for anything that crosses a process or machine boundary.

A blob is ``MAGIC | header length (4 bytes, big endian) | JSON header | raw array bytes``. The header
describes the structure (lists, tuples, dicts with string keys, scalars, strings, bytes) and every
array's dtype, shape, offset and size, plus the sha256 of the payload. Decoding never executes
anything: it checks the magic, version, sizes, dtypes, shapes and checksum and raises
:class:`WeightsDecodeError` with a clear message on any mismatch.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any, Iterator

import numpy as np

MAGIC = b"CLW1"
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 2 * 1024**3
MAX_HEADER_BYTES = 16 * 1024**2
MAX_DEPTH = 64
ALLOWED_DTYPE_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex: no objects, no strings


class WeightsDecodeError(ValueError):
    """The blob is not valid colearn-encoded weights (malformed, truncated, tampered or too large)."""


class WeightsEncodeError(TypeError):
    """The object holds something that has no safe typed encoding (e.g. an object array)."""


def _check_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightsEncodeError(f"dtype {dtype} cannot be encoded: only bool, int, uint, float and complex")
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def _flatten(obj: Any, arrays: list[np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise WeightsEncodeError(f"weights nest deeper than {MAX_DEPTH} levels")
    if obj is None:
        return {"t": "none"}
    if isinstance(obj, (bool, np.bool_)):
        return {"t": "bool", "v": bool(obj)}
    if isinstance(obj, int):
        return {"t": "int", "v": str(obj)}
    if isinstance(obj, float):
        return {"t": "float", "v": obj.hex()}
    if isinstance(obj, str):
        return {"t": "str", "v": obj}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        arrays.append(np.frombuffer(bytes(obj), dtype=np.uint8))
        return {"t": "bytes", "i": len(arrays) - 1}
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        dtype = _check_dtype(array.dtype)
        array = np.asarray(array, dtype=dtype)
        arrays.append(array if array.flags.c_contiguous else array.copy(order="C"))
        return {"t": "nd" if isinstance(obj, np.ndarray) else "np_scalar", "i": len(arrays) - 1}
    if isinstance(obj, (list, tuple)):
        return {"t": "list" if isinstance(obj, list) else "tuple",
                "items": [_flatten(item, arrays, depth + 1) for item in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise WeightsEncodeError("only dicts with string keys can be encoded")
        return {"t": "dict", "keys": list(obj), "items": [_flatten(v, arrays, depth + 1) for v in obj.values()]}
    raise WeightsEncodeError(f"cannot encode a {type(obj).__qualname__}: use arrays, scalars, lists or dicts")


def _header(tree: Any, arrays: list[np.ndarray], checksum: str) -> bytes:
    offset, buffers = 0, []
    for array in arrays:
        buffers.append({"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                        "nbytes": int(array.nbytes)})
        offset += int(array.nbytes)
    header = {"v": FORMAT_VERSION, "tree": tree, "buffers": buffers, "payload_bytes": offset, "sha256": checksum}
    return json.dumps(header, separators=(",", ":")).encode()


def _raw_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array without a copy (also for zero-size and 0-d arrays)."""
    return memoryview(array.reshape(-1)).cast("B")


def _payload_digest(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(_raw_bytes(array))
    return digest.hexdigest()


def encode_weights(obj: Any) -> bytes:
    """Encode weights (arrays, scalars, and lists/tuples/dicts of them) into a self-describing blob."""
    arrays: list[np.ndarray] = []
    tree = _flatten(obj, arrays)
    header = _header(tree, arrays, _payload_digest(arrays))
    parts = [MAGIC, struct.pack(">I", len(header)), header]
    parts.extend(_raw_bytes(array) for array in arrays)
    return b"".join(parts)


def encoded_size(obj: Any) -> int:
    """Size in bytes that :func:`encode_weights` would produce, without copying any array."""
    arrays: list[np.ndarray] = []
    tree = _flatten(obj, arrays)
    header = _header(tree, arrays, "0" * 64)
    return len(MAGIC) + 4 + len(header) + sum(int(a.nbytes) for a in arrays)


def weights_digest(obj: Any) -> str:
    """A sha256 fingerprint of weights (structure, dtypes, shapes and values), computed without copies."""
    arrays: list[np.ndarray] = []
    tree = _flatten(obj, arrays)
    digest = hashlib.sha256(_header(tree, arrays, ""))
    for array in arrays:
        digest.update(_raw_bytes(array))
    return digest.hexdigest()


def _fail(message: str) -> WeightsDecodeError:
    return WeightsDecodeError(f"invalid weights blob: {message}")


def _read_header(blob: memoryview, max_bytes: int) -> tuple[dict, int]:
    if len(blob) > max_bytes:
        raise _fail(f"{len(blob)} bytes exceeds the limit of {max_bytes}")
    if len(blob) < len(MAGIC) + 4 or bytes(blob[: len(MAGIC)]) != MAGIC:
        raise _fail("missing magic bytes (not a colearn weights blob, or truncated)")
    (header_len,) = struct.unpack(">I", blob[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if header_len > MAX_HEADER_BYTES or start + header_len > len(blob):
        raise _fail(f"header length {header_len} does not fit the blob")
    try:
        header = json.loads(bytes(blob[start: start + header_len]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("v") != FORMAT_VERSION:
        version = header.get("v") if isinstance(header, dict) else None
        raise _fail(f"unsupported format version {version!r} (this colearn reads version {FORMAT_VERSION})")
    return header, start + header_len


def _decode_buffers(header: dict, payload: memoryview, copy: bool) -> list[np.ndarray]:
    buffers = header.get("buffers")
    if not isinstance(buffers, list) or header.get("payload_bytes") != len(payload):
        raise _fail(f"payload is {len(payload)} bytes, header says {header.get('payload_bytes')!r} (truncated?)")
    if not isinstance(header.get("sha256"), str):
        raise _fail("header has no checksum")
    arrays, expected_offset = [], 0
    for index, spec in enumerate(buffers):
        try:
            dtype = np.dtype(spec["dtype"])
            shape = tuple(int(d) for d in spec["shape"])
            offset, nbytes = int(spec["offset"]), int(spec["nbytes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(f"buffer {index} is malformed ({exc})") from None
        if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise _fail(f"buffer {index} has forbidden dtype {dtype}")
        if any(d < 0 for d in shape) or math.prod(shape) * dtype.itemsize != nbytes:
            raise _fail(f"buffer {index}: shape {shape} x {dtype} does not make {nbytes} bytes")
        if offset != expected_offset or offset + nbytes > len(payload):
            raise _fail(f"buffer {index} lies outside the payload")
        array = np.frombuffer(payload[offset: offset + nbytes], dtype=dtype).reshape(shape)
        arrays.append(array.copy() if copy else array)
        expected_offset = offset + nbytes
    if _payload_digest([np.frombuffer(payload, dtype=np.uint8)]) != header["sha256"]:
        raise _fail("checksum mismatch: the payload was corrupted or tampered with")
    return arrays


def _unflatten(node: Any, arrays: list[np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH or not isinstance(node, dict):
        raise _fail("structure is malformed or too deep")
    kind = node.get("t")
    try:
        if kind == "none":
            return None
        if kind == "bool":
            return bool(node["v"])
        if kind == "int":
            return int(node["v"])
        if kind == "float":
            return float.fromhex(node["v"])
        if kind == "str":
            return str(node["v"])
        if kind in ("nd", "np_scalar", "bytes"):
            array = arrays[int(node["i"])]
            if kind == "bytes":
                return array.tobytes()
            return array[()] if kind == "np_scalar" else array
        if kind in ("list", "tuple"):
            items = [_unflatten(item, arrays, depth + 1) for item in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            keys, items = node["keys"], node["items"]
            if len(keys) != len(items) or not all(isinstance(k, str) for k in keys):
                raise _fail("dict keys and values do not match")
            return {k: _unflatten(v, arrays, depth + 1) for k, v in zip(keys, items)}
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, WeightsDecodeError):
            raise
        raise _fail(f"node {kind!r} is malformed ({exc})") from None
    raise _fail(f"unknown node type {kind!r}")


def decode_weights(blob: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_BYTES,
                   copy: bool = True) -> Any:
    """Decode a blob made by :func:`encode_weights`, validating everything before building arrays."""
    view = memoryview(blob).cast("B")
    header, payload_start = _read_header(view, max_bytes)
    arrays = _decode_buffers(header, view[payload_start:], copy)
    return _unflatten(header.get("tree"), arrays)


def iter_arrays(obj: Any) -> Iterator[np.ndarray]:
    """Every numpy array inside a weights structure, in encoding order."""
    arrays: list[np.ndarray] = []
    _flatten(obj, arrays)
    return iter(arrays)
