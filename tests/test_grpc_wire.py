"""The chunked wire format: round trips, every refusal, and a fuzzed decoder/reassembly."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("grpc")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from colearn.encoding import encode_weights, encoded_size  # noqa: E402
from colearn.grpc import PROTOCOL_VERSION  # noqa: E402
from colearn.grpc.chunking import (MAX_CHUNK_SIZE, MAX_SHARED_HEADER_BYTES, ChunkAssembler, PayloadTooLargeError,  # noqa: E402
                                   WIRE_DIGEST, ProtocolVersionError, WireError, assemble, blob_chunks,
                                   blob_messages, data_message, header_message, parse_chunk, weights_chunks,
                                   weights_messages)
from colearn.grpc.messages import (check_layout, verdict_from_json, verdict_json, weights_from_wire,  # noqa: E402
                                   weights_meta)
from colearn.grpc.protos import learner_pb2 as pb  # noqa: E402
from colearn.learner_utils import WeightsMismatchError  # noqa: E402
from colearn.ml_interface import (DiffPrivBudget, ProposedWeights, TrainingSummary, Weights)  # noqa: E402


def sample_weights() -> dict:
    return {"W": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -2], dtype=np.int64),
            "nested": [np.float64(0.5), (True, None, "s", b"raw")]}


def assert_same(a, b) -> None:
    assert encode_weights(a) == encode_weights(b)


@pytest.mark.parametrize("chunk_size", [1, 7, 1024, MAX_CHUNK_SIZE])
def test_round_trip_in_chunks_of_any_size(chunk_size: int) -> None:
    weights = sample_weights()
    chunks = list(weights_chunks(weights, {"k": 1}, chunk_size=chunk_size))
    assert chunks[0].HasField("header") and not any(c.HasField("header") for c in chunks[1:])
    assert all(0 < len(c.data) <= chunk_size for c in chunks)  # the header rides with the first data
    assert len(chunks) == -(-encoded_size(weights, digest=WIRE_DIGEST) // chunk_size)
    value, meta = assemble(chunks)
    assert_same(value, weights)
    assert meta == {"k": 1}


def test_chunks_stay_below_grpcs_message_cap() -> None:
    blob = encode_weights(np.zeros(5 * MAX_CHUNK_SIZE // 2, dtype=np.uint8))
    sizes = [c.ByteSize() for c in blob_chunks(blob, chunk_size=MAX_CHUNK_SIZE)]
    assert len(sizes) == 3 and max(sizes) < 4 * 1024 * 1024
    with pytest.raises(ValueError, match="chunk_size"):
        list(blob_chunks(blob, chunk_size=MAX_CHUNK_SIZE + 1))


def header(total: int, version: int = PROTOCOL_VERSION, meta: str = "{}") -> pb.Chunk:
    return pb.Chunk(header=pb.StreamHeader(protocol_version=version, total_bytes=total, metadata_json=meta))


def refusal(chunks, max_bytes: int = 1 << 20) -> WireError:
    with pytest.raises(WireError) as info:
        assemble(chunks, max_bytes)
    return info.value


def test_refusals_name_their_status() -> None:
    blob = encode_weights(sample_weights())
    data = [pb.Chunk(data=blob[i:i + 64]) for i in range(0, len(blob), 64)]
    assert "empty stream" in str(refusal([]))
    assert "must start with a header" in str(refusal(data))
    assert "second header" in str(refusal([header(len(blob)), header(len(blob))]))
    assert "empty chunk" in str(refusal([header(len(blob)), pb.Chunk(), *data]))
    both = pb.Chunk(header=header(len(blob)).header, data=data[0].data)
    assert "second header" in str(refusal([both, both]))
    assert_same(assemble([both, *data[1:]])[0], assemble([header(len(blob)), *data])[0])
    truncated = refusal([header(len(blob)), *data[:-1]])
    assert "truncated" in str(truncated) and truncated.status == "INVALID_ARGUMENT"
    assert "more than" in str(refusal([header(len(blob) - 1), *data]))
    too_big = refusal([header(len(blob)), *data], max_bytes=len(blob) - 1)
    assert isinstance(too_big, PayloadTooLargeError) and too_big.status == "RESOURCE_EXHAUSTED"
    old = refusal([header(len(blob), version=PROTOCOL_VERSION + 1), *data])
    assert isinstance(old, ProtocolVersionError) and old.status == "FAILED_PRECONDITION"
    assert "not valid JSON" in str(refusal([header(len(blob), meta="{"), *data]))
    assert "JSON object" in str(refusal([header(len(blob), meta="[1]"), *data]))


def test_tampered_payload_fails_the_checksum() -> None:
    blob = bytearray(encode_weights(sample_weights()))
    blob[-1] ^= 0xFF
    assert "checksum" in str(refusal(list(blob_chunks(bytes(blob)))))


def test_size_limit_is_checked_before_any_data_arrives() -> None:
    assembler = ChunkAssembler(max_bytes=100)
    with pytest.raises(PayloadTooLargeError, match="exceeds the limit of 100 bytes"):
        assembler.add(header(10**12))


def test_metadata_models_round_trip_and_validate() -> None:
    summary = TrainingSummary(dp_budget=DiffPrivBudget(target_epsilon=1, target_delta=1e-5, consumed_epsilon=0.5,
                                                       consumed_delta=0.0))
    weights = Weights(weights=1, training_summary=summary)
    back = weights_from_wire(1, json.loads(json.dumps(weights_meta(weights))))
    assert back == weights
    with pytest.raises(WireError, match="training_summary"):
        weights_from_wire(1, {"training_summary": {"dp_budget": {"target_epsilon": "lots"}}})
    with pytest.raises(WireError):
        weights_from_wire(1, {"unexpected": 1})
    verdict = ProposedWeights(weights=weights, vote_score={"acc": 0.25}, test_score=float("nan"), vote=True,
                              criterion="acc", evaluation_results={"x": np.float32(0.5), "v": np.arange(2)})
    again = verdict_from_json(verdict_json(verdict), weights)
    assert again.vote is True and again.vote_score == {"acc": 0.25} and np.isnan(again.test_score)
    assert again.evaluation_results == {"x": 0.5, "v": [0, 1]} and again.weights is weights
    with pytest.raises(WireError):
        verdict_from_json('{"vote_score": "bad", "test_score": 1}', weights)


def test_layout_check_names_the_mismatch() -> None:
    expected = {"W": np.zeros((2, 3), np.float32), "b": [np.zeros(3)]}
    check_layout({"W": np.ones((2, 3), np.float32), "b": [np.ones(3)]}, expected)
    cases = [({"W": np.zeros((3, 2), np.float32), "b": [np.zeros(3)]}, r"\['W'\].*float32\[3, 2\]"),
             ({"W": np.zeros((2, 3), np.float64), "b": [np.zeros(3)]}, "float64"),
             ({"b": [np.zeros(3)], "W": np.zeros((2, 3), np.float32)}, "expected keys"),
             ({"W": np.zeros((2, 3), np.float32), "b": []}, "list of 1"),
             ({"W": 1.0, "b": [np.zeros(3)]}, "expected an array")]
    for received, message in cases:
        with pytest.raises(WeightsMismatchError, match=message):
            check_layout(received, expected)


# ---- fuzzing: whatever arrives, the assembler returns weights or raises WireError, nothing else ----------

def _sometimes(draw, one_in: int = 4) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


def _mutations(blob: bytes):
    return st.one_of(
        st.just(blob), st.just(blob), st.just(blob),
        st.integers(0, max(0, len(blob) - 1)).map(lambda n: blob[:n]),  # truncation
        st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)).map(  # one flipped byte
            lambda t: blob[:t[0]] + bytes([blob[t[0]] ^ t[1]]) + blob[t[0] + 1:]),
        st.binary(max_size=256),  # garbage
    )


@st.composite
def chunk_streams(draw):
    """Mostly well-formed streams with one or two things wrong, so that every check gets reached."""
    weights = draw(st.sampled_from([sample_weights(), {"a": np.arange(5)}, [np.zeros(0), np.ones((2, 3))], 3.5]))
    original = encode_weights(weights)
    blob = draw(_mutations(original))
    declared = draw(st.integers(0, 4096)) if _sometimes(draw) else len(blob)
    version = draw(st.sampled_from([0, 1, 99])) if _sometimes(draw, 8) else PROTOCOL_VERSION
    meta = draw(st.sampled_from(["", "{", "null", '"x"', '{"a": [1, {"b": null}]}'])) if _sometimes(draw, 8) else "{}"
    size = draw(st.integers(1, 97))
    chunks = [pb.Chunk(data=blob[i:i + size]) for i in range(0, len(blob), size)]
    pristine = blob == original and declared == len(blob) and version == PROTOCOL_VERSION and meta == "{}"
    if not _sometimes(draw, 8):
        if chunks and draw(st.booleans()):  # the header rides with the first data, as colearn sends it
            chunks[0] = pb.Chunk(header=header(declared, version, meta).header, data=chunks[0].data)
        else:
            chunks.insert(0, header(declared, version, meta))
    else:
        pristine = False
    if chunks and _sometimes(draw):  # drop, duplicate or reorder a chunk
        pristine = False
        i = draw(st.integers(0, len(chunks) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap"]))
        if op == "drop":
            del chunks[i]
        elif op == "dup":
            chunks.insert(i, chunks[i])
        elif len(chunks) > 1:
            j = draw(st.integers(0, len(chunks) - 1))
            chunks[i], chunks[j] = chunks[j], chunks[i]
    if _sometimes(draw, 8):  # an empty chunk (no oneof set)
        chunks.insert(draw(st.integers(0, len(chunks))), pb.Chunk())
        pristine = False
    return weights, chunks, pristine


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_streams())
def test_fuzzed_chunk_streams_decode_or_fail_cleanly(case) -> None:
    original, chunks, pristine = case
    try:
        value, meta = assemble(chunks, max_bytes=4096)
    except WireError as exc:
        assert not pristine, f"a well-formed stream was refused: {exc}"
        assert exc.status in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION")
        return
    assert isinstance(meta, dict)
    encode_weights(value)  # whatever decoded is plain typed data again
    if pristine:
        assert_same(value, original)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.integers(1, 64))
def test_fuzzed_raw_protobuf_bytes_never_crash_the_assembler(raw: bytes, size: int) -> None:
    chunks = []
    for i in range(0, len(raw), size):
        try:
            chunks.append(pb.Chunk.FromString(raw[i:i + size]))
        except Exception:  # protobuf's own parse error: gRPC answers it before we see anything
            continue
    try:
        assemble(chunks, max_bytes=4096)
    except WireError:
        pass


# ---- the bytes-level (de)serialization of chunks ---------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_data_messages_are_protobuf_chunks(pieces) -> None:
    message = data_message(pieces)
    joined = b"".join(pieces)
    assert pb.Chunk.FromString(message) == pb.Chunk(data=joined)
    if joined:  # protobuf leaves out an empty field; data_message writes it (same meaning)
        assert message == pb.Chunk(data=joined).SerializeToString()
    head, value = parse_chunk(message)
    assert head is None and bytes(value) == joined
    assert value.obj is message  # read in place, no copy
    first = data_message(pieces, header_message(7, {"k": 1}))
    head, value = parse_chunk(first)
    assert pb.Chunk.FromString(first) == pb.Chunk(header=head, data=joined)
    assert (head.protocol_version, head.total_bytes, head.metadata_json) == (PROTOCOL_VERSION, 7, '{"k":1}')
    assert bytes(value) == joined and value.obj is first


def test_unusual_encodings_mean_what_protobuf_says() -> None:
    first, second = pb.Chunk(data=b"old").SerializeToString(), pb.Chunk(data=b"new").SerializeToString()
    assert parse_chunk(first + second)[1].tobytes() == b"new"  # repeated field: the last one wins
    head = pb.Chunk(header=pb.StreamHeader(total_bytes=5)).SerializeToString()
    for message in (head + first, first + head, first + head + second):  # in either order, any repeats
        header, data = parse_chunk(message)
        expected = pb.Chunk.FromString(message)
        assert header == expected.header and data.tobytes() == expected.data
    assert parse_chunk(b"")[0] is None and len(parse_chunk(b"")[1]) == 0
    with pytest.raises(WireError, match="not a valid Chunk"):
        parse_chunk(b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(WireError, match="not a valid StreamHeader"):
        parse_chunk(b"\x0a\x02\x08\xff" + first)


def test_weights_messages_cut_to_size_and_assemble() -> None:
    weights = {"w": np.arange(300_000, dtype=np.float32), "rest": sample_weights()}
    messages = list(weights_messages(weights, {"k": 2}, chunk_size=100_000))
    assert all(len(m) <= 100_000 + 8 for m in messages[1:])
    assert len(messages[0]) <= 100_000 + 8 + len(header_message(1, {"k": 2}))
    value, meta = assemble(messages)
    assert_same(value, weights)
    assert meta == {"k": 2}
    big_meta = {"summary": "x" * MAX_SHARED_HEADER_BYTES}  # its header is sent alone, below the message cap
    messages = list(weights_messages(weights, big_meta, chunk_size=MAX_CHUNK_SIZE))
    assert parse_chunk(messages[0])[0] is not None and len(parse_chunk(messages[0])[1]) == 0
    assert max(len(m) for m in messages) <= MAX_CHUNK_SIZE + 8 and assemble(messages)[1] == big_meta
    blob = encode_weights(weights)
    value, _ = assemble(blob_messages(blob, chunk_size=65_536))
    assert_same(value, weights)


def test_layout_is_refused_before_the_data_is_read() -> None:
    weights = {"w": np.zeros((100, 100), np.float32)}
    messages = list(weights_messages(weights, chunk_size=4096))
    expected = {"w": np.zeros((100, 10), np.float32)}
    assembler = ChunkAssembler(layout_check=lambda placeholder: check_layout(placeholder, expected))
    with pytest.raises(WeightsMismatchError, match=r"float32\[100, 100\]"):
        assembler.add(messages[0])  # the stream header and the first data, which holds the weights' header
    value, _ = assemble(messages, layout_check=lambda placeholder: check_layout(placeholder, weights))
    assert_same(value, weights)
