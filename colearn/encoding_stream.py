"""Decoding a format-2 weights stream chunk by chunk (re-exported as :class:`colearn.encoding.StreamDecoder`)."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Callable, Optional

import numpy as np

from colearn.encoding import (_PREFIX, ALIGNMENT, DEFAULT_MAX_BYTES, DIGEST_BYTES, MAGIC, MAGIC_V2, Chunk, _buffer_specs,
                              _fail, _header_length, _parse_header, _placeholders, _too_large, _unflatten, _views)

__all__ = ["StreamDecoder"]


class StreamDecoder:
    """Decodes a format-2 stream fed chunk by chunk, from an untrusted sender.

    The header is validated as soon as it has arrived: version, dtypes, shapes, structure, and the total size
    against ``max_bytes`` (a :class:`WeightsTooLargeError` before anything is allocated); ``layout_check``, if
    given, is then called with a placeholder of the weights (the real structure and scalars, arrays of the
    right dtypes and shapes that use no memory) and may raise to refuse them before the payload is read.
    Each chunk is copied once into a buffer the decoder owns and hashed; :meth:`finish` checks the trailer and
    returns the weights, whose arrays view that buffer. Every refusal is a :class:`WeightsDecodeError`
    (except whatever ``layout_check`` raises), after which the decoder refuses everything.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, layout_check: Optional[Callable[[Any], None]] = None):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes, self.layout_check = max_bytes, layout_check
        self.total_bytes: Optional[int] = None  # known once the header has arrived
        self.received = 0
        self._head = bytearray()
        self._digest = hashlib.sha256()
        self._tree: Any = None
        self._specs: list = []
        self._buffer: Optional[np.ndarray] = None
        self._view = memoryview(b"")
        self._payload_end = 0
        self._trailer = bytearray()
        self._error: Optional[BaseException] = None

    def feed(self, chunk: Chunk) -> None:
        """Take the next chunk of the stream; raises as soon as something is wrong."""
        if self._error is not None:
            raise _fail(f"the stream was already refused ({self._error})")
        try:
            self._feed(memoryview(chunk).cast("B"))
        except BaseException as exc:
            self._error = exc
            self._buffer, self._view = None, memoryview(b"")
            raise

    def _feed(self, data: memoryview) -> None:
        if self.received + len(data) > (self.total_bytes if self.total_bytes is not None else self.max_bytes):
            if self.total_bytes is None:
                raise _too_large(self.received + len(data), self.max_bytes)
            raise _fail(f"the stream carries more than the {self.total_bytes} bytes its header declares")
        self.received += len(data)
        if self.total_bytes is None:
            data = self._take_header(data)
        position = self.received - len(data) - len(self._head)  # where ``data`` starts in the payload
        if len(data) and position < self._payload_end:
            part = data[: self._payload_end - position]
            self._view[position: position + len(part)] = part
            self._digest.update(part)
            data = data[len(part):]
        self._trailer += data

    def _take_header(self, data: memoryview) -> memoryview:
        """Move header bytes from ``data`` into ``self._head``; validate the header once complete."""
        if len(self._head) < _PREFIX:
            take = data[: _PREFIX - len(self._head)]
            self._head += take
            data = data[len(take):]
            if len(self._head) >= len(MAGIC) and bytes(self._head[: len(MAGIC)]) != MAGIC_V2:
                raise _fail("format 1 blobs cannot be streamed (the sender is an older colearn)"
                            if bytes(self._head[: len(MAGIC)]) == MAGIC
                            else "missing magic bytes (not a colearn weights stream)")
            if len(self._head) < _PREFIX:
                return data
        needed = _PREFIX + _header_length(memoryview(self._head), 1 << 62, self.max_bytes)
        take = data[: needed - len(self._head)]
        self._head += take
        data = data[len(take):]
        if len(self._head) < needed:
            return data
        header = _parse_header(memoryview(self._head)[_PREFIX:], 2)
        self._specs = _buffer_specs(header, aligned=True)
        self._tree = header.get("tree")
        skeleton = _unflatten(self._tree, _placeholders(self._specs), skeleton=True)
        total = len(self._head) + header["payload_bytes"] + DIGEST_BYTES
        if total > self.max_bytes:
            raise _too_large(total, self.max_bytes)
        if self.layout_check is not None:
            self.layout_check(skeleton)
        if self.received > total:
            raise _fail(f"the stream carries more than the {total} bytes its header declares")
        self._digest.update(self._head)
        spare = np.empty(header["payload_bytes"] + ALIGNMENT, dtype=np.uint8)  # not touched: no page faults yet
        start = -spare.ctypes.data % ALIGNMENT
        self._buffer = spare[start: start + header["payload_bytes"]]
        self._view = memoryview(self._buffer)
        self._payload_end = header["payload_bytes"]
        self.total_bytes = total
        return data

    def finish(self) -> Any:
        """The decoded weights, once the whole stream has been fed; refuses truncation and checksum mismatch."""
        if self._error is not None:
            raise _fail(f"the stream was already refused ({self._error})")
        if self.total_bytes is None or self.received < self.total_bytes:
            expected = "?" if self.total_bytes is None else self.total_bytes
            self._error = _fail(f"stream truncated: got {self.received} of {expected} bytes")
            raise self._error
        if not hmac.compare_digest(self._digest.digest(), bytes(self._trailer)):
            self._error = _fail("checksum mismatch: the stream was corrupted or tampered with")
            self._buffer = None
            raise self._error
        assert self._buffer is not None
        arrays = _views(self._buffer, self._specs, copy=False)
        self._error = _fail("the stream was already decoded")
        self._buffer, self._view = None, memoryview(b"")
        return _unflatten(self._tree, arrays)
