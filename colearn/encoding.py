"""Typed, pickle-free encoding of weights for anything that crosses a process or machine boundary.

Format 2 (what :func:`encode_weights` and :class:`StreamEncoder` write)::

    b"CLW2" | header length (4 bytes, big endian) | JSON header (space-padded) | payload | digest (16 or 32 bytes)

The header describes the structure (lists, tuples, dicts with string keys, scalars, strings, bytes) and every
array's dtype, shape, offset and size; arrays start at 64-byte aligned payload offsets (zero padding between
them, and the header is padded so the payload starts aligned too). The trailer is the digest of everything
before it, so a sender hashes while it streams, a receiver checks while it receives, and the header is covered
too. The header names the algorithm (:data:`DIGESTS`): sha256 by default (a cryptographic hash: blobs that
are stored and addressed by content use it); BLAKE3, a cryptographic hash about 2x faster here, where the
``blake3`` package is installed; or XXH3-128, a non-cryptographic 128-bit checksum about 10x faster than
sha256 (``xxhash`` package), which the gRPC transport uses on the wire, where TLS already authenticates every
byte and the checksum's job is to catch corruption and truncation (no unkeyed hash, however strong, stops
someone who can rewrite the stream: they recompute it). Format 1 (``b"CLW1"``, the payload's sha256 inside the
header) is still read by :func:`decode_weights`.

Decoding never executes anything: it checks the magic, version, sizes, dtypes, shapes and checksum and raises
:class:`WeightsDecodeError` with a clear message on any mismatch. :class:`StreamDecoder` validates the header
as soon as it has arrived (refusing a payload over its size limit before allocating anything), copies each
chunk once into a buffer it owns, and returns arrays that view that buffer.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import struct
from typing import Any, Iterator, Union

import numpy as np

from colearn.encoding_digests import DIGESTS  # noqa: F401  (re-exported: part of this module's API)
from colearn.encoding_digests import DIGEST_SIZES, _install_hint, available_digests, new_digest

MAGIC = b"CLW1"
MAGIC_V2 = b"CLW2"
FORMAT_VERSION = 2
DEFAULT_MAX_BYTES = 2 * 1024**3
MAX_HEADER_BYTES = 16 * 1024**2  # default limits of decoders (StreamDecoder takes max_header_bytes, max_arrays)
MAX_ARRAYS = 100_000
MAX_DIMENSION = 2**48  # largest dimension of a shape: larger ones are refused before any size is computed
MAX_DEPTH = 64
ALIGNMENT = 64
DIGEST_BYTES = 32  # the sha256 (default) and blake3 trailers; see DIGEST_SIZES
_PREFIX = len(MAGIC) + 4
ALLOWED_DTYPE_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex: no objects, no strings
_DTYPE_PATTERN = re.compile(r"[<>|=][biufc][0-9]{1,2}")
_ZEROS = memoryview(bytes(ALIGNMENT))
Chunk = Union[bytes, bytearray, memoryview]


class WeightsDecodeError(ValueError):
    """The blob is not valid colearn-encoded weights (malformed, truncated, tampered or too large)."""


class WeightsTooLargeError(WeightsDecodeError):
    """The blob (or the size its header declares) is over the decoder's ``max_bytes``."""


class WeightsLimitError(WeightsTooLargeError):
    """The header is longer, or describes more arrays, than the decoder's limit."""


class WeightsEncodeError(TypeError):
    """The object holds something that has no safe typed encoding (e.g. an object array)."""


def _check_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightsEncodeError(f"dtype {dtype} cannot be encoded: only bool, int, uint, float and complex")
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def _flatten(obj: Any, arrays: list[np.ndarray], depth: int = 0, sizes_only: bool = False) -> Any:
    """The header tree of ``obj``; its arrays go to ``arrays`` (C-contiguous little-endian copies where needed, or,
    with ``sizes_only``, zero-memory placeholders of the same dtype and shape: nothing is copied)."""
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
        arrays.append(placeholder(np.dtype(np.uint8), (memoryview(obj).nbytes,)) if sizes_only
                      else np.frombuffer(bytes(obj), dtype=np.uint8))
        return {"t": "bytes", "i": len(arrays) - 1}
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        dtype = _check_dtype(array.dtype)
        if sizes_only:
            arrays.append(placeholder(dtype, array.shape))
        else:
            array = np.asarray(array, dtype=dtype)
            arrays.append(array if array.flags.c_contiguous else array.copy(order="C"))
        return {"t": "nd" if isinstance(obj, np.ndarray) else "np_scalar", "i": len(arrays) - 1}
    if isinstance(obj, (list, tuple)):
        return {"t": "list" if isinstance(obj, list) else "tuple",
                "items": [_flatten(item, arrays, depth + 1, sizes_only) for item in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise WeightsEncodeError("only dicts with string keys can be encoded")
        return {"t": "dict", "keys": list(obj),
                "items": [_flatten(v, arrays, depth + 1, sizes_only) for v in obj.values()]}
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):  # a torch tensor (0.2.x PyTorch weights)
        try:  # it crosses the boundary as a typed array
            array = obj.detach().cpu().numpy()
        except TypeError as exc:  # bfloat16 and friends have no numpy dtype
            raise WeightsEncodeError(f"cannot encode a torch tensor of {obj.dtype}: {exc}") from None
        return _flatten(array, arrays, depth, sizes_only)
    raise WeightsEncodeError(f"cannot encode a {type(obj).__qualname__}: use arrays, scalars, lists or dicts")


def _raw_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array without a copy (also for zero-size and 0-d arrays)."""
    return memoryview(array.reshape(-1)).cast("B")


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _v1_header(tree: Any, arrays: list[np.ndarray], checksum: str) -> bytes:
    offset, buffers = 0, []
    for array in arrays:
        buffers.append({"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                        "nbytes": int(array.nbytes)})
        offset += int(array.nbytes)
    header = {"v": 1, "tree": tree, "buffers": buffers, "payload_bytes": offset, "sha256": checksum}
    return json.dumps(header, separators=(",", ":")).encode()


class _Layout:
    """Where everything goes in format 2: the header bytes, the arrays and their aligned payload offsets."""

    def __init__(self, obj: Any, digest: str = "sha256", sizes_only: bool = False):
        new_digest(digest)  # refuse an unknown or unavailable digest before any work
        self.digest = digest
        arrays: list[np.ndarray] = []
        tree = _flatten(obj, arrays, sizes_only=sizes_only)
        buffers, offset = [], 0
        for array in arrays:
            offset = _aligned(offset)
            buffers.append({"dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                            "nbytes": int(array.nbytes)})
            offset += int(array.nbytes)
        header = json.dumps({"v": 2, "digest": digest, "tree": tree, "buffers": buffers, "payload_bytes": offset},
                            separators=(",", ":")).encode()
        header += b" " * (_aligned(_PREFIX + len(header)) - _PREFIX - len(header))
        self.head = MAGIC_V2 + struct.pack(">I", len(header)) + header
        self.arrays, self.buffers = arrays, buffers
        self.payload_bytes = offset
        self.size = len(self.head) + offset + DIGEST_SIZES[digest]

    def body(self) -> Iterator[memoryview]:
        """Everything before the trailer, as zero-copy pieces: header, then arrays with zero padding."""
        yield memoryview(self.head)
        position = 0
        for array, spec in zip(self.arrays, self.buffers):
            if spec["offset"] > position:
                yield _ZEROS[: spec["offset"] - position]
            yield _raw_bytes(array)
            position = spec["offset"] + spec["nbytes"]


def encode_weights(obj: Any, *, digest: str = "sha256") -> bytes:
    """Encode weights (arrays, scalars, and lists/tuples/dicts of them) into a self-describing blob (format 2).

    Deterministic: the same weights (and ``digest``, the trailer's algorithm) always give the same bytes.
    """
    layout = _Layout(obj, digest)
    pieces = list(layout.body())
    hasher = new_digest(layout.digest)
    for piece in pieces:
        hasher.update(piece)
    return b"".join([*pieces, hasher.digest()])


def encoded_size(obj: Any, *, digest: str = "sha256") -> int:
    """Size in bytes that :func:`encode_weights` would produce, from dtypes and shapes alone: no array is copied,
    so a broadcast view of a huge shape (stride 0) is measured, not materialised."""
    return _Layout(obj, digest, sizes_only=True).size


def weights_digest(obj: Any) -> str:
    """A sha256 fingerprint of weights (structure, dtypes, shapes and values), computed without copies."""
    arrays: list[np.ndarray] = []
    tree = _flatten(obj, arrays)
    digest = hashlib.sha256(_v1_header(tree, arrays, ""))
    for array in arrays:
        digest.update(_raw_bytes(array))
    return digest.hexdigest()


def iter_arrays(obj: Any) -> Iterator[np.ndarray]:
    """Every numpy array inside a weights structure, in encoding order."""
    arrays: list[np.ndarray] = []
    _flatten(obj, arrays)
    return iter(arrays)


# ---- decoding -------------------------------------------------------------------------------------------

def _fail(message: str) -> WeightsDecodeError:
    return WeightsDecodeError(f"invalid weights blob: {message}")


def _too_large(size: int, max_bytes: int) -> WeightsTooLargeError:
    return WeightsTooLargeError(f"invalid weights blob: {size} bytes exceeds the limit of {max_bytes} (max_bytes)")


def _header_length(prefix: memoryview, available: int, max_bytes: int,
                   max_header_bytes: int = MAX_HEADER_BYTES) -> int:
    (header_len,) = struct.unpack(">I", prefix[len(MAGIC): _PREFIX])
    if header_len > max_header_bytes:
        raise WeightsLimitError(f"invalid weights blob: a header of {header_len} bytes exceeds the limit of "
                                f"{max_header_bytes} (max_header_bytes)")
    if _PREFIX + header_len > available:
        raise _fail(f"header length {header_len} does not fit the blob")
    if _PREFIX + header_len > max_bytes:
        raise _too_large(_PREFIX + header_len, max_bytes)
    return header_len


def _parse_header(raw: Union[bytes, memoryview], version: int) -> dict:
    try:
        header = json.loads(bytes(raw))
    except (ValueError, RecursionError) as exc:  # also integers too long to convert
        raise _fail(f"header is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("v") != version:
        found = header.get("v") if isinstance(header, dict) else None
        raise _fail(f"unsupported format version {found!r} (the {'CLW1' if version == 1 else 'CLW2'} magic "
                    f"goes with version {version}; this colearn reads versions 1 and {FORMAT_VERSION})")
    return header


def _exact_int(value: Any, what: str) -> int:
    if type(value) is not int:  # a JSON integer: no bool, float or string is coerced
        raise ValueError(f"{what} {value!r} is not an integer")
    return value


def _buffer_specs(header: dict, aligned: bool, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_arrays: int = MAX_ARRAYS) -> list[tuple[np.dtype, tuple, int, int]]:
    """The validated (dtype, shape, offset, nbytes) of every buffer; offsets are consecutive (aligned in v2).
    Sizes are exact integers, refused over ``max_bytes`` before anything is allocated."""
    buffers, payload_bytes = header.get("buffers"), header.get("payload_bytes")
    if not isinstance(buffers, list) or type(payload_bytes) is not int or payload_bytes < 0:
        raise _fail("header has no buffer list or payload size")
    if len(buffers) > max_arrays:
        raise WeightsLimitError(f"invalid weights blob: {len(buffers)} arrays exceed the limit of {max_arrays} "
                                f"(max_arrays)")
    if payload_bytes > max_bytes:
        raise _too_large(payload_bytes, max_bytes)
    specs, end = [], 0
    for index, spec in enumerate(buffers):
        try:
            if not isinstance(spec["dtype"], str) or not _DTYPE_PATTERN.fullmatch(spec["dtype"]):
                raise ValueError(f"dtype {spec['dtype']!r}")
            dtype = np.dtype(spec["dtype"])
            if not isinstance(spec["shape"], list) or len(spec["shape"]) > MAX_DEPTH:
                raise ValueError(f"shape {spec['shape']!r}")
            shape = tuple(_exact_int(d, "dimension") for d in spec["shape"])
            offset, nbytes = _exact_int(spec["offset"], "offset"), _exact_int(spec["nbytes"], "nbytes")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise _fail(f"buffer {index} is malformed or has a forbidden dtype ({exc})") from None
        if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise _fail(f"buffer {index} has forbidden dtype {dtype}")
        if any(d < 0 or d > MAX_DIMENSION for d in shape):
            raise _fail(f"buffer {index}: shape {list(shape)} has a negative or absurd dimension")
        extent = math.prod(max(d, 1) for d in shape) * dtype.itemsize  # also bounds zero-size arrays' shapes
        if extent > max_bytes:
            raise _too_large(extent, max_bytes)
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise _fail(f"buffer {index}: shape {shape} x {dtype} does not make {nbytes} bytes")
        if offset != (_aligned(end) if aligned else end) or offset + nbytes > payload_bytes:
            raise _fail(f"buffer {index} lies outside the payload")
        specs.append((dtype, shape, offset, nbytes))
        end = offset + nbytes
    if end != payload_bytes:
        raise _fail(f"payload_bytes {payload_bytes} does not match the buffers (they end at {end})")
    return specs


def _unflatten(node: Any, arrays: list, depth: int = 0, skeleton: bool = False) -> Any:
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
            index = node["i"]
            if not isinstance(index, int) or not 0 <= index < len(arrays):
                raise IndexError(f"buffer {index!r} does not exist")
            array = arrays[index]
            if kind == "bytes":
                return b"" if skeleton else array.tobytes()
            return array[()] if kind == "np_scalar" else array
        if kind in ("list", "tuple"):
            items = [_unflatten(item, arrays, depth + 1, skeleton) for item in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            keys, items = node["keys"], node["items"]
            if len(keys) != len(items) or not all(isinstance(k, str) for k in keys):
                raise _fail("dict keys and values do not match")
            return {k: _unflatten(v, arrays, depth + 1, skeleton) for k, v in zip(keys, items)}
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, WeightsDecodeError):
            raise
        raise _fail(f"node {kind!r} is malformed ({exc})") from None
    raise _fail(f"unknown node type {kind!r}")


def placeholder(dtype: Any, shape: tuple) -> np.ndarray:
    """A read-only array of ``dtype`` and ``shape`` that uses no memory: its layout without data."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape),
                                           writeable=False)


def _placeholders(specs: list) -> list[np.ndarray]:
    """Placeholders of the arrays ``specs`` describes (for validating the structure)."""
    return [placeholder(dtype, shape) for dtype, shape, _, _ in specs]


def _views(buffer: Union[np.ndarray, memoryview], specs: list, copy: bool) -> list[np.ndarray]:
    arrays = []
    for dtype, shape, offset, nbytes in specs:
        array = np.frombuffer(buffer[offset: offset + nbytes], dtype=dtype).reshape(shape)
        arrays.append(array.copy() if copy else array)
    return arrays


def _decode_v1(view: memoryview, header: dict, start: int, copy: bool, max_bytes: int) -> Any:
    payload = view[start:]
    if header.get("payload_bytes") != len(payload):
        raise _fail(f"payload is {len(payload)} bytes, header says {header.get('payload_bytes')!r} (truncated?)")
    if not isinstance(header.get("sha256"), str):
        raise _fail("header has no checksum")
    specs = _buffer_specs(header, aligned=False, max_bytes=max_bytes)
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise _fail("checksum mismatch: the payload was corrupted or tampered with")
    return _unflatten(header.get("tree"), _views(payload, specs, copy))


def digest_name(header: dict) -> str:
    """The trailer digest a format-2 header names, if this installation can check it."""
    name = header.get("digest")
    if name not in available_digests():
        raise _fail(f"checksum algorithm {name!r} is not supported here{_install_hint(name)}")
    return name


def _decode_v2(view: memoryview, header: dict, start: int, copy: bool, max_bytes: int) -> Any:
    specs = _buffer_specs(header, aligned=True, max_bytes=max_bytes)
    tree = header.get("tree")
    _unflatten(tree, _placeholders(specs), skeleton=True)
    digest = digest_name(header)
    trailer = DIGEST_SIZES[digest]
    expected = start + header["payload_bytes"] + trailer
    if len(view) != expected:
        raise _fail(f"blob is {len(view)} bytes, its header makes {expected} "
                    f"({'truncated' if len(view) < expected else 'trailing bytes'})")
    if not hmac.compare_digest(new_digest(digest, view[:-trailer]).digest(), view[-trailer:]):
        raise _fail("checksum mismatch: the blob was corrupted or tampered with")
    return _unflatten(tree, _views(view[start:-trailer], specs, copy))


def decode_weights(blob: Chunk, *, max_bytes: int = DEFAULT_MAX_BYTES, copy: bool = True) -> Any:
    """Decode a blob made by :func:`encode_weights` (format 2, or format 1 from older colearn), validating
    everything before building arrays. With ``copy=False`` the arrays view ``blob``."""
    view = memoryview(blob).cast("B")
    if len(view) > max_bytes:
        raise _too_large(len(view), max_bytes)
    magic = bytes(view[: len(MAGIC)])
    if len(view) < _PREFIX or magic not in (MAGIC, MAGIC_V2):
        raise _fail("missing magic bytes (not a colearn weights blob, or truncated)")
    header_len = _header_length(view, len(view), max_bytes)
    version = 1 if magic == MAGIC else 2
    header = _parse_header(view[_PREFIX: _PREFIX + header_len], version)
    decode = _decode_v1 if version == 1 else _decode_v2
    return decode(view, header, _PREFIX + header_len, copy, max_bytes)


def __getattr__(name: str) -> Any:
    """The streaming API lives in :mod:`colearn.encoding_stream` (it builds on the helpers here)."""
    if name in ("StreamEncoder", "StreamDecoder", "encode_chunks"):
        from colearn import encoding_stream

        return getattr(encoding_stream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
