"""The typed weights codec: exact round trips, refusal of anything unsafe or malformed, streaming, fuzzing."""
import gc
import hashlib
import json
import resource
import struct
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from colearn import encoding_stream
from colearn import encoding as encoding_module
from colearn.encoding import (ALIGNMENT, DIGEST_BYTES, DIGEST_SIZES, MAGIC, StreamDecoder, WeightsDecodeError,
                              WeightsEncodeError, WeightsTooLargeError, available_digests, decode_weights, encode_chunks,
                              encode_weights, encoded_size, new_digest, weights_digest)
from colearn.encoding_stream import THREAD_MIN_BYTES

DTYPES = st.sampled_from(["bool", "int8", "int32", "int64", "uint16", "float16", "float32", "float64",
                          "complex64"])
ARRAYS = DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
LEAVES = st.one_of(ARRAYS, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=8),
                   st.binary(max_size=16))
TREES = st.recursive(LEAVES, lambda children: st.one_of(
    st.lists(children, max_size=4), st.tuples(children, children),
    st.dictionaries(st.text(max_size=5), children, max_size=4)), max_leaves=12)


def assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b


@settings(max_examples=150, deadline=None)
@given(TREES)
def test_round_trip_is_exact(tree):
    blob = encode_weights(tree)
    assert len(blob) == encoded_size(tree)
    assert_same(decode_weights(blob), tree)
    assert weights_digest(tree) == weights_digest(decode_weights(blob))


def test_numpy_scalars_and_byte_order_survive():
    value = {"empty": np.zeros((0, 3), np.float32), "step": np.int64(3), "big_endian": np.arange(4, dtype=">f8"), "view": np.arange(12).reshape(3, 4).T}
    decoded = decode_weights(encode_weights(value))
    assert decoded["step"] == 3 and isinstance(decoded["step"], np.int64)
    np.testing.assert_array_equal(decoded["big_endian"], np.arange(4.0))
    np.testing.assert_array_equal(decoded["view"], value["view"])
    assert decoded["view"].flags.writeable
    assert decoded["empty"].shape == (0, 3)


@pytest.mark.parametrize("bad", [np.array([object()]), {1: np.zeros(2)}, {"f": lambda: 0}, np.array(["a", "b"])])
def test_unsafe_objects_are_refused(bad):
    with pytest.raises(WeightsEncodeError):
        encode_weights(bad)


def test_digest_changes_with_values_dtype_and_shape():
    base = [np.zeros((2, 3), np.float32)]
    digests = {weights_digest(base), weights_digest([np.ones((2, 3), np.float32)]),
               weights_digest([np.zeros((3, 2), np.float32)]), weights_digest([np.zeros((2, 3), np.float64)])}
    assert len(digests) == 4


def _tamper_header(blob: bytes, change) -> bytes:
    (length,) = struct.unpack(">I", blob[4:8])
    header = json.loads(blob[8:8 + length])
    change(header)
    new = json.dumps(header).encode()
    return blob[:4] + struct.pack(">I", len(new)) + new + blob[8 + length:]


BLOB = encode_weights([np.arange(10, dtype=np.float32), {"b": np.ones(3, np.int16)}])


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b[:6], "truncated"),
    (lambda b: b[:12], "header length"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum"),
    (lambda b: _tamper_header(b, lambda h: h.update(v=99)), "version"),
    (lambda b: _tamper_header(b, lambda h: h["buffers"][0].update(dtype="|O")), "dtype"),
    (lambda b: _tamper_header(b, lambda h: h["buffers"][0].update(shape=[11])), "shape"),
    (lambda b: _tamper_header(b, lambda h: h["tree"].update(t="pickle")), "unknown node"),
    (lambda b: _tamper_header(b, lambda h: h["tree"]["items"][0].update(i=7)), "malformed"),
])
def test_malformed_blobs_are_refused_clearly(mutate, message):
    with pytest.raises(WeightsDecodeError, match=message):
        decode_weights(mutate(BLOB))


def test_size_limit_is_enforced():
    with pytest.raises(WeightsDecodeError, match="exceeds the limit"):
        decode_weights(BLOB, max_bytes=len(BLOB) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, len(BLOB)))
def test_fuzzed_input_only_ever_raises_decode_errors(noise, cut):
    for candidate in (noise, BLOB[:cut] + noise, MAGIC + noise):
        try:
            decode_weights(candidate)
        except WeightsDecodeError:
            pass


# ---- format 2 details, format 1 compatibility, digests ------------------------------------------------------

def _v1_blob(arrays: list) -> bytes:
    """A format-1 blob as colearn wrote it before format 2 (a list of arrays), for the compatibility test."""
    payload = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    buffers, offset = [], 0
    for a in arrays:
        buffers.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes})
        offset += a.nbytes
    tree = {"t": "list", "items": [{"t": "nd", "i": i} for i in range(len(arrays))]}
    header = json.dumps({"v": 1, "tree": tree, "buffers": buffers, "payload_bytes": offset,
                         "sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return b"CLW1" + struct.pack(">I", len(header)) + header + payload


def test_format_1_blobs_are_still_read_and_checked():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)]
    blob = _v1_blob(arrays)
    assert_same(decode_weights(blob), arrays)
    with pytest.raises(WeightsDecodeError, match="checksum"):
        decode_weights(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(WeightsDecodeError, match="format 1"):
        StreamDecoder().feed(blob)


def test_arrays_are_aligned_and_the_digest_covers_the_header():
    blob = encode_weights({"a": np.ones(3, np.uint8), "b": np.arange(5, dtype=np.float64)})
    (length,) = struct.unpack(">I", blob[4:8])
    header = json.loads(blob[8:8 + length])
    assert (8 + length) % ALIGNMENT == 0 and all(b["offset"] % ALIGNMENT == 0 for b in header["buffers"])
    assert blob[-DIGEST_BYTES:] == hashlib.sha256(blob[:-DIGEST_BYTES]).digest()
    decoded = decode_weights(blob, copy=False)
    assert decoded["b"].ctypes.data % 8 == 0 and not decoded["b"].flags.writeable  # views of the bytes blob
    renamed = blob.replace(b'"keys":["a","b"]', b'"keys":["b","a"]')
    assert renamed != blob
    with pytest.raises(WeightsDecodeError, match="checksum"):
        decode_weights(renamed)


def test_digest_choice():
    value = [np.arange(4.0)]
    with pytest.raises(ValueError, match="digest"):
        encode_weights(value, digest="md5")
    assert encoded_size(value) == len(encode_weights(value))
    assert encode_weights(value)[-DIGEST_SIZES["sha256"]:] == hashlib.sha256(encode_weights(value)[:-32]).digest()


@pytest.mark.parametrize("digest", ["blake3", "xxh3-128"])
def test_optional_digests(digest):
    if digest not in available_digests():
        pytest.skip(f"{digest} needs a package that is not installed")
    value = {"w": [np.arange(40.0).reshape(5, 8), np.int8(3)]}
    blob = encode_weights(value, digest=digest)
    trailer = DIGEST_SIZES[digest]
    assert len(blob) == encoded_size(value, digest=digest) and blob != encode_weights(value)
    assert blob[-trailer:] == new_digest(digest, blob[:-trailer]).digest() and len(new_digest(digest).digest()) == trailer
    assert json.loads(blob[8:8 + struct.unpack(">I", blob[4:8])[0]])["digest"] == digest
    assert_same(decode_weights(blob), value)
    assert_same(stream_decode(encode_chunks(value, 7, digest=digest)), value)
    for position in (len(blob) - 1, len(blob) - trailer - 1):  # the trailer, the payload
        with pytest.raises(WeightsDecodeError, match="checksum"):
            decode_weights(blob[:position] + bytes([blob[position] ^ 1]) + blob[position + 1:])
    with pytest.raises(WeightsDecodeError, match="truncated"):
        decode_weights(blob[:-1])


def test_a_digest_that_is_not_installed_is_refused_with_a_hint(monkeypatch):
    blob = encode_weights([np.arange(3.0)], digest="xxh3-128") if "xxh3-128" in available_digests() else None
    from colearn import encoding_digests

    for module in (encoding_module, encoding_digests):  # encoding (decoding) and the digests (hash objects)
        monkeypatch.setattr(module, "available_digests", lambda: ("sha256",))
    with pytest.raises(ValueError, match="pip install xxhash"):
        encode_weights([np.arange(3.0)], digest="xxh3-128")
    if blob is not None:
        with pytest.raises(WeightsDecodeError, match="'xxh3-128' is not supported here.*pip install xxhash"):
            decode_weights(blob)


# ---- streaming ------------------------------------------------------------------------------------------

def stream_decode(chunks, **options):
    decoder = StreamDecoder(**options)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.finish()


@settings(max_examples=100, deadline=None)
@given(TREES, st.integers(1, 300), st.sampled_from(available_digests()), st.booleans())
def test_streaming_round_trip_equals_the_blob(tree, chunk_size, digest, threaded):
    chunks = list(encode_chunks(tree, chunk_size, digest=digest, hash_thread=threaded))
    assert all(len(c) <= chunk_size for c in chunks)
    blob = encode_weights(tree, digest=digest)
    assert b"".join(bytes(c) for c in chunks) == blob
    decoded = stream_decode(chunks, hash_thread=threaded)
    assert_same(decoded, tree)
    assert encode_weights(decoded, digest=digest) == blob


def test_stream_decoded_arrays_own_an_aligned_writable_buffer():
    big = np.arange(THREAD_MIN_BYTES // 8 + 3, dtype=np.float64)
    value = {"small": np.arange(3, dtype=np.int16), "big": big}
    chunks = [bytes(c) for c in encode_chunks(value, 65536)]
    for threaded in (False, True):
        decoded = stream_decode(chunks, hash_thread=threaded)
        for array in decoded.values():
            assert array.flags.writeable and array.ctypes.data % ALIGNMENT == 0
        decoded["big"][0] = -1  # the decoder's own memory: the chunks are untouched
        np.testing.assert_array_equal(stream_decode(chunks)["big"], big)


def test_stream_refusals():
    value = {"w": np.arange(1000, dtype=np.float32)}
    blob = encode_weights(value)
    cases = {
        "checksum": [blob[:-1] + bytes([blob[-1] ^ 0x40])],  # trailer
        "checksum mismatch": [blob[:200] + bytes([blob[200] ^ 1]) + blob[201:]],  # payload
        "truncated": [blob[:-5]],
        "more than": [blob + b"x"],
        "magic": [b"nope" + blob[4:]],
    }
    for message, chunks in cases.items():
        with pytest.raises(WeightsDecodeError, match=message):
            stream_decode(chunks)
    decoder = StreamDecoder()
    with pytest.raises(WeightsDecodeError, match="truncated"):
        decoder.finish()
    with pytest.raises(WeightsDecodeError, match="already refused"):
        decoder.feed(blob)


def test_oversize_is_refused_from_the_header_before_allocating(monkeypatch):
    allocations = []
    monkeypatch.setattr(encoding_stream, "_allocate", lambda size: allocations.append(size))
    blob = encode_weights(np.zeros(10_000, np.float64))
    decoder = StreamDecoder(max_bytes=len(blob) - 1)
    with pytest.raises(WeightsTooLargeError, match="exceeds the limit"):
        decoder.feed(blob[:len(blob) - 80_000])  # the header and a little data: no payload read yet
    lie = _tamper_header(blob, lambda h: h.update(payload_bytes=10**15, buffers=[
        {"dtype": "<f8", "shape": [10**15 // 8], "offset": 0, "nbytes": 10**15}]))
    with pytest.raises(WeightsTooLargeError, match="exceeds the limit"):
        StreamDecoder().feed(lie[:400])
    with pytest.raises(WeightsTooLargeError):
        StreamDecoder(max_bytes=100).feed(b"CLW2" + struct.pack(">I", 1000))  # even the header is too long
    assert allocations == []


def test_layout_check_sees_a_placeholder_before_the_payload():
    value = {"W": np.ones((3, 4), np.float32), "b": [np.int64(2), 1.5, "x"]}
    blob = encode_weights(value)
    seen = []

    def refuse(placeholder):
        seen.append(placeholder)
        raise LookupError("wrong layout")

    decoder = StreamDecoder(layout_check=refuse)
    with pytest.raises(LookupError):
        decoder.feed(blob[:-60])
    (placeholder,) = seen
    assert placeholder["W"].shape == (3, 4) and placeholder["W"].dtype == np.float32
    assert placeholder["W"].strides == (0, 0) and not placeholder["W"].flags.writeable
    assert placeholder["b"][0].dtype == np.int64 and placeholder["b"][1:] == [1.5, "x"]
    with pytest.raises(WeightsDecodeError, match="already refused"):
        decoder.feed(blob[-60:])
    assert_same(stream_decode([blob], layout_check=lambda p: None), value)


def test_an_abandoned_stream_stops_its_thread():
    blob = encode_weights(np.zeros(THREAD_MIN_BYTES // 8 + 1))
    decoder = StreamDecoder(hash_thread=True)
    decoder.feed(blob[: len(blob) // 2])
    del decoder
    gc.collect()
    deadline = time.monotonic() + 10
    while any(t.name == "colearn-digest" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "colearn-digest" for t in threading.enumerate())


def _corrupt(blob: bytes, kind: str, where: int, value: int) -> bytes:
    if not blob:
        return blob
    where %= len(blob)
    if kind == "flip":
        return blob[:where] + bytes([blob[where] ^ (value or 1)]) + blob[where + 1:]
    if kind == "cut":
        return blob[:where]
    if kind == "insert":
        return blob[:where] + bytes([value]) + blob[where:]
    if kind == "delete":
        return blob[:where] + blob[where + 1:]
    return blob


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([BLOB, encode_weights({"x": np.arange(300, dtype=np.int16), "y": [1, "z", b"q"]})]),
       st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete", "none"]), st.integers(0, 10**6),
                          st.integers(0, 255)), max_size=3),
       st.lists(st.integers(1, 120), min_size=1, max_size=8), st.booleans(), st.integers(100, 10**6))
def test_fuzzed_streams_only_ever_raise_decode_errors(blob, corruptions, sizes, threaded, max_bytes):
    data = blob
    for kind, where, value in corruptions:
        data = _corrupt(data, kind, where, value)
    chunks, position, i = [], 0, 0
    while position < len(data):
        chunks.append(data[position: position + sizes[i % len(sizes)]])
        position += sizes[i % len(sizes)]
        i += 1
    try:
        decoded = stream_decode(chunks, max_bytes=max_bytes, hash_thread=threaded)
    except WeightsDecodeError:
        assert data != blob or max_bytes < len(blob)
        return
    assert data == blob  # nothing corrupted gets through (the digest covers every byte)
    assert encode_weights(decoded) == blob


# ---- receive buffers ------------------------------------------------------------------------------------

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses madvise")


@linux_only
def test_large_receive_buffers_are_private_maps_mapped_ahead_of_the_data():
    buffer = encoding_stream._allocate(64 * 1024**2)
    start = buffer.ctypes.data
    maps = [line.split() for line in open("/proc/self/maps")]
    (mode,) = [m[1] for m in maps if int(m[0].split("-")[0], 16) <= start < int(m[0].split("-")[1], 16)]
    assert mode == "rw-p"  # private: not shared memory, and not shared with forked children
    prefaulter = encoding_stream._Prefaulter(buffer)
    prefaulter.ensure(1)  # maps the first window only
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer[: prefaulter.WINDOW] = 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults < prefaulter.WINDOW // 4096 // 10
    prefaulter.ensure(len(buffer))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer[:] = 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults < len(buffer) // 4096 // 10


def test_streams_decode_where_the_kernel_cannot_map_ahead(monkeypatch):
    calls = []
    monkeypatch.setattr(encoding_stream, "_madvise", lambda: lambda *args: calls.append(args) or -1)
    value = {"big": np.arange(THREAD_MIN_BYTES // 4 + 5, dtype=np.float32)}
    assert_same(stream_decode(encode_chunks(value, 1024**2, digest="sha256")), value)
    assert len(calls) == 1  # tried once, then plain page faults
