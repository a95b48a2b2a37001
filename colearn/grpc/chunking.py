"""The wire format of weights and models: a colearn.encoding stream split into chunk messages.

A stream is a sequence of ``learner.proto`` ``Chunk`` messages that carry the encoded weights (format 2:
header, arrays, checksum trailer) in pieces of at most ``chunk_size`` bytes, so that gRPC's 4 MiB message cap
is never reached; the first chunk also carries the stream header (protocol version, total size, JSON
metadata), so that a stream costs no more messages than its data (each message costs gRPC Python a fixed
0.1-0.4 ms). Chunks are serialized here directly from the arrays' memory (one copy, no protobuf objects: see
:func:`data_message`), and whatever arrives is parsed without copying its data. :class:`ChunkAssembler`
reassembles a stream from an untrusted peer with :class:`colearn.encoding.StreamDecoder`: it checks the
version and the declared and actual sizes against a limit before reading data, copies each chunk once, and
checks dtypes, shapes, an optional layout and the checksum. Every refusal is a :class:`WireError` that names the gRPC status it should get.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from google.protobuf.message import DecodeError

from colearn.encoding import (StreamDecoder, StreamEncoder, WeightsDecodeError, WeightsLimitError,
                              WeightsTooLargeError, available_digests)
from colearn.grpc import PROTOCOL_VERSION
from colearn.grpc.protos import learner_pb2 as pb

DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 3 * 1024 * 1024  # stays below gRPC's default 4 MiB message cap with room for framing
DEFAULT_MAX_BYTES = 1024**3
MAX_METADATA_BYTES = 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 4 * 1024**2  # the weights' JSON header (dtypes, shapes, structure)
DEFAULT_MAX_ARRAYS = 10_000  # arrays one stream of weights may hold
MAX_SHARED_HEADER_BYTES = 64 * 1024  # a larger stream header (big metadata) goes in a chunk of its own
WIRE_DIGEST = os.environ.get("COLEARN_WIRE_DIGEST") or ("xxh3-128" if "xxh3-128" in available_digests() else "sha256")
if WIRE_DIGEST not in available_digests():
    warnings.warn(f"COLEARN_WIRE_DIGEST={WIRE_DIGEST!r} is not available here {available_digests()}: using sha256")
    WIRE_DIGEST = "sha256"
"""The trailer checksum of the weights this side sends: XXH3-128 where the ``xxhash`` package is installed (the
``grpc`` extra installs it), else sha256; ``$COLEARN_WIRE_DIGEST`` overrides. TLS authenticates every byte on
the wire; the checksum catches corruption and truncation, and XXH3 does that at about 13 GB/s, against 1.1 GB/s
for sha256 (bench/grpc_transfer.py: hashing was most of the encoding's cost). Receivers accept every digest in
:func:`~colearn.encoding.available_digests`."""
TRANSPORT_OPTIONS: List[Tuple[str, Any]] = []
"""gRPC channel and server options of the learner service's transport (bench/grpc_transfer.py gives raw
streaming the same ones, so that the comparison measures the encoding, not the transport)."""
_HEADER_TAG = 0x0A  # Chunk field 1 (header), wire type 2 (length-delimited)
_DATA_TAG = 0x12  # Chunk field 2 (data), wire type 2
Message = Union[bytes, pb.Chunk]


class WireError(ValueError):
    """A chunk stream or message from a peer was refused; ``status`` names the gRPC status code."""

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str, status: Optional[str] = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class PayloadTooLargeError(WireError):
    status = "RESOURCE_EXHAUSTED"


class ProtocolVersionError(WireError):
    status = "FAILED_PRECONDITION"


def check_protocol_version(version: int) -> None:
    """Refuse a peer that speaks another protocol version."""
    if version != PROTOCOL_VERSION:
        raise ProtocolVersionError(f"incompatible protocol version {version} (this colearn speaks "
                                   f"version {PROTOCOL_VERSION}; upgrade the older side)")


def check_chunk_size(chunk_size: int) -> int:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes, got {chunk_size}")
    return chunk_size


# ---- serializing -----------------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def data_message(pieces: Sequence[Union[bytes, memoryview]], head: bytes = b"") -> bytes:
    """The serialized ``Chunk(data=b"".join(pieces))``, made with one copy of the pieces; ``head``, a serialized
    ``Chunk(header=...)`` (see :func:`header_message`), goes first (serialized messages concatenate into one
    with the fields of both)."""
    return b"".join([head, bytes([_DATA_TAG]) + _varint(sum(len(p) for p in pieces)), *pieces])


def header_message(total_bytes: int, metadata: Optional[Dict[str, Any]] = None) -> bytes:
    meta = json.dumps(metadata or {}, separators=(",", ":"), allow_nan=True)
    return pb.Chunk(header=pb.StreamHeader(protocol_version=PROTOCOL_VERSION, total_bytes=total_bytes,
                                           metadata_json=meta)).SerializeToString()


def serialize_chunk(message: Message) -> bytes:
    """gRPC serializer for chunk streams: messages made here are already bytes; ``pb.Chunk`` objects work too."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def weights_messages(obj: Any, metadata: Optional[Dict[str, Any]] = None, *,
                     chunk_size: int = DEFAULT_CHUNK_SIZE, digest: Optional[str] = None) -> Iterator[bytes]:
    """The serialized chunk stream of ``obj``, encoded (typed, hashed) while it is sent; no full-size copy.

    ``digest``: the trailer's algorithm (default :data:`WIRE_DIGEST`). Encoding errors
    (:class:`~colearn.encoding.WeightsEncodeError`) raise at once, before the first message.
    """
    check_chunk_size(chunk_size)
    encoder = StreamEncoder(obj, digest=digest or WIRE_DIGEST)
    return _messages(encoder.size, metadata, encoder.windows(chunk_size))


def blob_messages(blob: Union[bytes, memoryview], metadata: Optional[Dict[str, Any]] = None, *,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """The serialized chunk stream of an already encoded blob (as :func:`colearn.encoding.encode_weights` makes)."""
    check_chunk_size(chunk_size)
    view = memoryview(blob).cast("B")
    return _messages(len(view), metadata, ([view[s: s + chunk_size]] for s in range(0, len(view), chunk_size)))


def _messages(total: int, metadata: Optional[Dict[str, Any]],
              windows: Iterable[List[memoryview]]) -> Iterator[bytes]:
    head = header_message(total, metadata)
    if len(head) > MAX_SHARED_HEADER_BYTES:  # alone, so that no message nears gRPC's cap
        yield head
        head = b""
    for window in windows:
        yield data_message(window, head)  # a small header rides with the first data
        head = b""
    if head:  # pragma: no cover - a format-2 stream is never empty
        yield head


def blob_chunks(blob: bytes, metadata: Optional[Dict[str, Any]] = None, *,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pb.Chunk]:
    """:func:`blob_messages` as protobuf ``Chunk`` objects (for generated stubs and tests)."""
    return (pb.Chunk.FromString(m) for m in blob_messages(blob, metadata, chunk_size=chunk_size))


def weights_chunks(obj: Any, metadata: Optional[Dict[str, Any]] = None, *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pb.Chunk]:
    """:func:`weights_messages` as protobuf ``Chunk`` objects. Encoding errors raise at once."""
    messages = weights_messages(obj, metadata, chunk_size=chunk_size)
    return (pb.Chunk.FromString(m) for m in messages)


# ---- parsing ---------------------------------------------------------------------------------------------

def _field(view: memoryview, position: int, tag: int) -> Optional[Tuple[memoryview, int]]:
    """The value and end of the length-delimited field ``tag`` that starts at ``position``, if one does."""
    if position >= len(view) or view[position] != tag:
        return None
    length, shift, position = 0, 0, position + 1
    for position in range(position, min(position + 10, len(view))):
        length |= (view[position] & 0x7F) << shift
        if view[position] < 0x80:
            end = position + 1 + length
            return (view[position + 1: end], end) if end <= len(view) else None
        shift += 7
    return None


def parse_chunk(message: Message) -> Tuple[Optional[pb.StreamHeader], memoryview]:
    """``(header, data)`` of a chunk: the stream header (on a stream's first chunk; else None) and a view of the
    data (maybe empty).

    Chunks serialized the usual way (data; or header then data) are read in place, without copying the data;
    anything else goes through protobuf (same meaning). Unparseable bytes raise :class:`WireError`.
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        view = memoryview(message).cast("B")
        head = _field(view, 0, _HEADER_TAG)
        start = head[1] if head is not None else 0
        data = _field(view, start, _DATA_TAG) if start < len(view) else (view[start:], start)
        if data is not None and data[1] == len(view):
            if head is None:
                return None, data[0]
            try:
                return pb.StreamHeader.FromString(bytes(head[0])), data[0]
            except DecodeError as exc:
                raise WireError(f"a chunk's header is not a valid StreamHeader message ({exc})") from None
        try:
            message = pb.Chunk.FromString(bytes(view))
        except DecodeError as exc:
            raise WireError(f"a chunk is not a valid Chunk message ({exc})") from None
    return (message.header if message.HasField("header") else None), memoryview(message.data)


class ChunkAssembler:
    """Reassembles one chunk stream from an untrusted peer, refusing anything malformed or too large.

    ``layout_check`` (see :class:`~colearn.encoding.StreamDecoder`) may refuse the weights from their header,
    before their data is read; what it raises propagates unchanged.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, layout_check: Optional[Callable[[Any], None]] = None, *,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_arrays: int = DEFAULT_MAX_ARRAYS):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes, self.layout_check = max_bytes, layout_check
        self.max_header_bytes, self.max_arrays = max_header_bytes, max_arrays
        self.metadata: Optional[Dict[str, Any]] = None
        self.total_bytes: Optional[int] = None
        self._decoder: Optional[StreamDecoder] = None
        self._received = 0

    def add(self, chunk: Message) -> None:
        header, value = parse_chunk(chunk)
        if self._decoder is None:
            if header is None:
                raise WireError("chunk stream must start with a header chunk")
            self._start(header)
            if not len(value):
                return
        elif header is not None:
            raise WireError("chunk stream has a second header after the first")
        elif not len(value):
            raise WireError("chunk stream has an empty chunk after the first")
        assert self.total_bytes is not None
        if self._received + len(value) > self.total_bytes:
            raise WireError(f"chunk stream carries more than the {self.total_bytes} bytes its header declared")
        self._received += len(value)
        try:
            self._decoder.feed(value)
        except WeightsDecodeError as exc:
            raise _wire_error(exc) from None
        if self._decoder.total_bytes is not None and self._decoder.total_bytes != self.total_bytes:
            more = "more" if self._decoder.total_bytes > self.total_bytes else "fewer"
            raise WireError(f"the weights in the stream make {self._decoder.total_bytes} bytes, {more} than the "
                            f"{self.total_bytes} bytes its header declared")

    def _start(self, header: pb.StreamHeader) -> None:
        check_protocol_version(header.protocol_version)
        if header.total_bytes > self.max_bytes:
            raise PayloadTooLargeError(f"payload of {header.total_bytes} bytes exceeds the limit of "
                                       f"{self.max_bytes} bytes (max_bytes)")
        if len(header.metadata_json.encode()) > MAX_METADATA_BYTES:
            raise PayloadTooLargeError(f"metadata exceeds {MAX_METADATA_BYTES} bytes")
        try:
            metadata = json.loads(header.metadata_json or "{}")
        except (ValueError, RecursionError) as exc:  # also integers too long to convert
            raise WireError(f"header metadata is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(metadata, dict):
            raise WireError("header metadata must be a JSON object")
        self.metadata, self.total_bytes = metadata, int(header.total_bytes)
        self._decoder = StreamDecoder(max(1, self.total_bytes), self.layout_check,
                                      max_header_bytes=self.max_header_bytes, max_arrays=self.max_arrays)

    def decode(self) -> Any:
        """The weights, once the stream has ended (validated: sizes, version, dtypes, shapes, checksum)."""
        if self._decoder is None or self.total_bytes is None:
            raise WireError("chunk stream ended before its header (empty stream)")
        if self._received != self.total_bytes:
            raise WireError(f"chunk stream truncated: got {self._received} of {self.total_bytes} bytes")
        try:
            return self._decoder.finish()
        except WeightsDecodeError as exc:
            raise _wire_error(exc) from None


def _wire_error(exc: WeightsDecodeError) -> WireError:
    if isinstance(exc, WeightsLimitError):  # a header too long, too many arrays
        return PayloadTooLargeError(str(exc))
    if isinstance(exc, WeightsTooLargeError):  # the weights' header describes more than the stream declared
        return PayloadTooLargeError(f"{exc} (more than the stream header declared)")
    return WireError(str(exc))


def assemble(chunks: Iterable[Message], max_bytes: int = DEFAULT_MAX_BYTES,
             layout_check: Optional[Callable[[Any], None]] = None, **limits: int) -> Tuple[Any, Dict[str, Any]]:
    """Read a whole chunk stream and return ``(decoded object, header metadata)``; raises :class:`WireError`.
    ``limits``: ``max_header_bytes``, ``max_arrays`` (see :class:`ChunkAssembler`)."""
    assembler = ChunkAssembler(max_bytes, layout_check, **limits)
    for chunk in chunks:
        assembler.add(chunk)
    value = assembler.decode()
    assert assembler.metadata is not None
    return value, assembler.metadata
