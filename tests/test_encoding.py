"""The typed weights codec: exact round trips, refusal of anything unsafe or malformed, fuzzing."""
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from colearn.encoding import (MAGIC, WeightsDecodeError, WeightsEncodeError, decode_weights, encode_weights,
                              encoded_size, weights_digest)

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
