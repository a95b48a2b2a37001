"""The wire format of weights and models: a colearn.encoding blob split into chunk messages.

A stream is one header chunk (protocol version, total size, JSON metadata) and then data chunks that
carry the blob, each at most ``chunk_size`` bytes so that gRPC's 4 MiB message cap is never reached.
:class:`ChunkAssembler` reassembles a stream from an untrusted peer: it checks the version, the
declared and actual sizes against a limit, and decodes the blob with colearn.encoding (dtype, shape,
checksum). Every refusal is a :class:`WireError` that names the gRPC status it should be answered with.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from colearn.encoding import WeightsDecodeError, decode_weights, encode_weights
from colearn.grpc import PROTOCOL_VERSION
from colearn.grpc.protos import learner_pb2 as pb

DEFAULT_CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 3 * 1024 * 1024  # stays below gRPC's default 4 MiB message cap with room for framing
DEFAULT_MAX_BYTES = 1024**3
MAX_METADATA_BYTES = 1024 * 1024


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


def blob_chunks(blob: bytes, metadata: Optional[Dict[str, Any]] = None, *,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pb.Chunk]:
    """The chunk stream that carries ``blob`` (header first), slicing it without copying the whole blob."""
    check_chunk_size(chunk_size)
    meta = json.dumps(metadata or {}, separators=(",", ":"), allow_nan=True)
    yield pb.Chunk(header=pb.StreamHeader(protocol_version=PROTOCOL_VERSION, total_bytes=len(blob),
                                          metadata_json=meta))
    view = memoryview(blob)
    for start in range(0, len(view), chunk_size):
        yield pb.Chunk(data=view[start: start + chunk_size].tobytes())


def weights_chunks(obj: Any, metadata: Optional[Dict[str, Any]] = None, *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pb.Chunk]:
    """Encode ``obj`` (typed, pickle-free) and return its chunk stream. Encoding errors raise at once."""
    blob = encode_weights(obj)
    return blob_chunks(blob, metadata, chunk_size=chunk_size)


class ChunkAssembler:
    """Reassembles one chunk stream from an untrusted peer, refusing anything malformed or too large."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.metadata: Optional[Dict[str, Any]] = None
        self.total_bytes: Optional[int] = None
        self._buffer = bytearray()

    def add(self, chunk: pb.Chunk) -> None:
        part = chunk.WhichOneof("part")
        if self.metadata is None:
            if part != "header":
                raise WireError("chunk stream must start with a header chunk")
            self._start(chunk.header)
            return
        if part != "data":
            raise WireError("chunk stream has a second header (or an empty chunk) after the first")
        assert self.total_bytes is not None
        data = chunk.data  # each access copies the bytes out of the message: once only
        if len(self._buffer) + len(data) > self.total_bytes:
            raise WireError(f"chunk stream carries more than the {self.total_bytes} bytes its header declared")
        self._buffer += data

    def _start(self, header: pb.StreamHeader) -> None:
        check_protocol_version(header.protocol_version)
        if header.total_bytes > self.max_bytes:
            raise PayloadTooLargeError(f"payload of {header.total_bytes} bytes exceeds the limit of "
                                       f"{self.max_bytes} bytes (max_bytes)")
        if len(header.metadata_json.encode()) > MAX_METADATA_BYTES:
            raise PayloadTooLargeError(f"metadata exceeds {MAX_METADATA_BYTES} bytes")
        try:
            metadata = json.loads(header.metadata_json or "{}")
        except json.JSONDecodeError as exc:
            raise WireError(f"header metadata is not valid JSON ({exc})") from None
        if not isinstance(metadata, dict):
            raise WireError("header metadata must be a JSON object")
        self.metadata, self.total_bytes = metadata, int(header.total_bytes)

    def blob(self) -> memoryview:
        """The reassembled blob, once the stream has ended; refuses a missing header or truncation."""
        if self.metadata is None or self.total_bytes is None:
            raise WireError("chunk stream ended before its header (empty stream)")
        if len(self._buffer) != self.total_bytes:
            raise WireError(f"chunk stream truncated: got {len(self._buffer)} of {self.total_bytes} bytes")
        return memoryview(self._buffer)

    def decode(self) -> Any:
        """Decode the reassembled blob into weights (validated: magic, version, dtypes, shapes, checksum)."""
        try:
            return decode_weights(self.blob(), max_bytes=self.max_bytes, copy=False)
        except WeightsDecodeError as exc:
            raise WireError(str(exc)) from None


def assemble(chunks: Iterable[pb.Chunk], max_bytes: int = DEFAULT_MAX_BYTES) -> Tuple[Any, Dict[str, Any]]:
    """Read a whole chunk stream and return ``(decoded object, header metadata)``; raises :class:`WireError`."""
    assembler = ChunkAssembler(max_bytes)
    for chunk in chunks:
        assembler.add(chunk)
    value = assembler.decode()
    assert assembler.metadata is not None
    return value, assembler.metadata
