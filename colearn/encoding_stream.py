"""Streaming format-2 weights: :class:`StreamEncoder` / :func:`encode_chunks` and :class:`StreamDecoder`.

Re-exported by :mod:`colearn.encoding`. A sender never builds the whole blob: it streams the header, then
zero-copy views of the arrays, hashing them as it goes, then the digest trailer (sha256 by default, or the
BLAKE3 or XXH3-128 the sender asks for). A receiver validates the header as soon as it has it, copies each
chunk once into a buffer it owns, hashes it, and checks the trailer. For large payloads the receiver hashes in
a background thread (hashlib, blake3 and xxhash release the GIL), so that hashing overlaps with receiving; the
digest is the same either way.
"""
from __future__ import annotations

import ctypes
import functools
import hmac
import mmap
import queue
import sys
import threading
import weakref
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from colearn.encoding import (_PREFIX, ALIGNMENT, DEFAULT_MAX_BYTES, DIGEST_SIZES, MAGIC, MAGIC_V2, MAX_ARRAYS,
                              MAX_HEADER_BYTES, Chunk,
                              _buffer_specs, _fail, _header_length, _Layout, _parse_header, _placeholders,
                              _too_large, _unflatten, _views, digest_name, new_digest)

__all__ = ["StreamEncoder", "StreamDecoder", "encode_chunks", "THREAD_MIN_BYTES"]

THREAD_MIN_BYTES = 4 * 1024**2
"""A :class:`StreamDecoder` hashes payloads at least this large in a background thread (unless its
``hash_thread`` says otherwise)."""
MMAP_MIN_BYTES = 4 * 1024**2
"""A :class:`StreamDecoder` keeps payloads at least this large in an anonymous memory map (see ``_allocate``)."""
_SLICE = 4 * 1024**2


class _Hasher:
    """A digest over a sequence of buffers, computed inline or by a background thread that follows behind.

    ``update(data, target)`` also copies ``data`` into ``target`` first (in the thread too: numpy's copy and
    the hashes release the GIL, so receiving goes on meanwhile).
    """

    def __init__(self, name: str, threaded: bool, initial: bytes = b""):
        self._digest = new_digest(name, initial)
        self._queue: Optional[queue.SimpleQueue] = None
        self._stopped = False
        self._error: Optional[BaseException] = None
        self.threaded = threaded
        if threaded:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name="colearn-digest", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None or self._stopped:
                return
            data, target = item
            try:
                if target is not None:
                    np.copyto(target, np.frombuffer(data, dtype=np.uint8))
                for start in range(0, len(data), _SLICE):
                    self._digest.update(data[start: start + _SLICE])
            except BaseException as exc:  # pragma: no cover - copying and hashing live buffers do not fail
                self._error = exc
                return

    def update(self, data: memoryview, target: Optional[np.ndarray] = None) -> None:
        if self._queue is not None:
            self._queue.put((data, target))
            return
        if target is not None:
            np.copyto(target, np.frombuffer(data, dtype=np.uint8))
        self._digest.update(data)

    def digest(self) -> bytes:
        """The digest of everything given so far (waits for the thread)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
            if self._error is not None:
                raise self._error
        return self._digest.digest()

    def close(self) -> None:
        """Stop the thread soon without waiting for it (the stream was abandoned)."""
        self._stopped = True
        if self._queue is not None:
            self._queue.put(None)


def _allocate(size: int) -> np.ndarray:
    """An aligned, uninitialised byte buffer. Large ones are private anonymous memory maps: pages come on first
    write like numpy's, but without numpy's transparent-huge-page advice, whose first faults in a process can
    stall for a second on virtual machines (measured: 1.1 s instead of 0.2 s for 400 MB). Private, not
    ``mmap``'s default shared map, which is backed by shared memory: filling and freeing 400 MB took 0.44 s and
    0.1 s shared, 0.27 s and 0.03 s private (same machine, same run)."""
    if size >= MMAP_MIN_BYTES:
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        memory = mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
        return np.frombuffer(memory, dtype=np.uint8)  # unmapped with its last array
    spare = np.empty(size + ALIGNMENT, dtype=np.uint8)
    start = -spare.ctypes.data % ALIGNMENT
    return spare[start: start + size]


_MADV_POPULATE_WRITE = 23  # Linux >= 5.14


@functools.lru_cache(maxsize=None)
def _madvise() -> Optional[Callable[[int, int, int], int]]:
    """libc's ``madvise`` through ctypes (which lets other threads run meanwhile), on Linux; else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has madvise
        return None
    function.argtypes, function.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return function


class _Prefaulter:
    """Maps a large receive buffer's pages in a window ahead of the data (``MADV_POPULATE_WRITE``): one system
    call per 16 MiB instead of a page fault per 4 KiB page. Filling 400 MB took 0.26 s instead of 0.34 s
    (measured). Where the kernel or platform has no such call, pages fault in on first write as before."""

    WINDOW = 16 * 1024**2

    def __init__(self, buffer: np.ndarray):
        self._madvise = _madvise() if buffer.nbytes >= MMAP_MIN_BYTES else None
        self._address, self._size, self._done = buffer.ctypes.data, buffer.nbytes, 0

    def ensure(self, end: int) -> None:
        """Have the pages up to byte ``end`` (and a window beyond) mapped."""
        while self._madvise is not None and self._done < min(end, self._size):
            length = min(self.WINDOW, self._size - self._done)
            if self._madvise(self._address + self._done, length, _MADV_POPULATE_WRITE) != 0:
                self._madvise = None  # an older kernel: plain page faults
                return
            self._done += length


def _threaded(choice: Optional[bool], payload_bytes: int) -> bool:
    return payload_bytes >= THREAD_MIN_BYTES if choice is None else choice


class StreamEncoder:
    """Format-2 encoding of ``obj`` as a stream: the header, then the arrays' own bytes (no copies), then the
    digest trailer. Raises :class:`~colearn.encoding.WeightsEncodeError` at once for anything unsafe (and
    ValueError for a ``digest`` that is not available).

    ``size`` is the total number of bytes; ``b"".join(encoder.chunks(n))`` equals
    ``encode_weights(obj, digest=digest)``. ``hash_thread``: hash in a background thread that follows the
    sending (default: no; measured slower than hashing chunk by chunk on 2 cores).
    The arrays must not change while a stream is being consumed (if they do, the receiver refuses the checksum).
    """

    def __init__(self, obj: Any, *, digest: str = "sha256", hash_thread: bool = False):
        self._layout = _Layout(obj, digest)
        self.size = self._layout.size
        self.payload_bytes = self._layout.payload_bytes
        self.hash_thread = hash_thread

    def windows(self, chunk_size: int) -> Iterator[List[memoryview]]:
        """The stream cut into consecutive windows of ``chunk_size`` bytes (the last may be shorter), each a list
        of zero-copy pieces; the last window ends with the digest of everything before it."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        return self._windows(chunk_size)

    def _windows(self, chunk_size: int) -> Iterator[List[memoryview]]:
        hasher = _Hasher(self._layout.digest, self.hash_thread)
        try:
            window: List[memoryview] = []
            room = chunk_size
            for piece in [*self._layout.body(), None]:
                trailer = piece is None
                if trailer:  # once everything before it is hashed
                    piece = memoryview(hasher.digest())
                while len(piece):
                    part, piece = piece[:room], piece[room:]
                    if not trailer:
                        hasher.update(part)  # chunk by chunk, at the pace of sending
                    window.append(part)
                    room -= len(part)
                    if room == 0:
                        yield window
                        window, room = [], chunk_size
            if window:
                yield window
        finally:
            hasher.close()

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """The stream as chunks of ``chunk_size`` bytes: views of the arrays where a chunk lies inside one,
        otherwise a small joined copy."""
        for window in self.windows(chunk_size):
            yield window[0] if len(window) == 1 else b"".join(window)


def encode_chunks(obj: Any, chunk_size: int = 1024 * 1024, *, digest: str = "sha256",
                  hash_thread: bool = False) -> Iterator[Chunk]:
    """Encode ``obj`` as a stream of chunks of at most ``chunk_size`` bytes (see :class:`StreamEncoder`).

    Encoding errors raise at once; the chunks are hashed as they are produced, the digest is the trailer.
    """
    return StreamEncoder(obj, digest=digest, hash_thread=hash_thread).chunks(chunk_size)


class StreamDecoder:
    """Decodes a format-2 stream fed chunk by chunk, from an untrusted sender.

    The header is validated as soon as it has arrived: version, dtypes, shapes, structure, and the total size
    against ``max_bytes`` (a :class:`~colearn.encoding.WeightsTooLargeError` before anything is allocated; a
    header over ``max_header_bytes`` or with more than ``max_arrays`` arrays is a ``WeightsLimitError``);
    ``layout_check``, if given, is then called with a placeholder of the weights (the real structure and
    scalars, arrays of the right dtypes and shapes that use no memory) and may raise to refuse them before the
    payload is read. Each chunk is copied once into a buffer the decoder owns and hashed (in a background thread
    for large payloads, see ``hash_thread``); :meth:`finish` checks the trailer and returns the weights, whose
    arrays view that buffer. Every refusal is a :class:`~colearn.encoding.WeightsDecodeError` (except what
    ``layout_check`` raises), after which the decoder refuses everything.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, layout_check: Optional[Callable[[Any], None]] = None, *,
                 hash_thread: Optional[bool] = None, max_header_bytes: int = MAX_HEADER_BYTES,
                 max_arrays: int = MAX_ARRAYS):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes, self.layout_check, self.hash_thread = max_bytes, layout_check, hash_thread
        self.max_header_bytes, self.max_arrays = max_header_bytes, max_arrays
        self.total_bytes: Optional[int] = None  # known once the header has arrived
        self.received = 0
        self._head = bytearray()
        self._hasher: Optional[_Hasher] = None
        self._tree: Any = None
        self._specs: list = []
        self._buffer: Optional[np.ndarray] = None
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
            self._refuse(exc)
            raise

    def _refuse(self, error: BaseException) -> None:
        self._error = error
        self._buffer = None
        if self._hasher is not None:
            self._hasher.close()

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
            assert self._hasher is not None
            size = min(len(data), self._payload_end - position)
            part, target = data[:size], self._buffer[position: position + size]
            self._prefaulter.ensure(position + size)
            if self._hasher.threaded and not isinstance(part.obj, bytes):
                np.copyto(target, np.frombuffer(part, dtype=np.uint8))  # the caller may reuse its buffer
                part = memoryview(target)
                target = None
            self._hasher.update(part, target)  # copied into the buffer and hashed, maybe by the thread
            data = data[size:]
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
        needed = _PREFIX + _header_length(memoryview(self._head), 1 << 62, self.max_bytes, self.max_header_bytes)
        take = data[: needed - len(self._head)]
        self._head += take
        data = data[len(take):]
        if len(self._head) < needed:
            return data
        header = _parse_header(memoryview(self._head)[_PREFIX:], 2)
        digest = digest_name(header)
        self._specs = _buffer_specs(header, aligned=True, max_bytes=self.max_bytes, max_arrays=self.max_arrays)
        payload = header["payload_bytes"]
        total = len(self._head) + payload + DIGEST_SIZES[digest]
        if total > self.max_bytes:
            raise _too_large(total, self.max_bytes)
        self._tree = header.get("tree")
        skeleton = _unflatten(self._tree, _placeholders(self._specs), skeleton=True)
        if self.layout_check is not None:
            self.layout_check(skeleton)
        if self.received > total:
            raise _fail(f"the stream carries more than the {total} bytes its header declares")
        self._buffer = _allocate(payload)
        self._prefaulter = _Prefaulter(self._buffer)
        self._payload_end, self.total_bytes = payload, total
        self._hasher = _Hasher(digest, _threaded(self.hash_thread, payload), bytes(self._head))
        weakref.finalize(self, self._hasher.close)  # an abandoned stream stops its thread
        return data

    def finish(self) -> Any:
        """The decoded weights, once the whole stream has been fed; refuses truncation and checksum mismatch."""
        if self._error is not None:
            raise _fail(f"the stream was already refused ({self._error})")
        if self.total_bytes is None or self.received < self.total_bytes:
            expected = "?" if self.total_bytes is None else self.total_bytes
            error = _fail(f"stream truncated: got {self.received} of {expected} bytes")
            self._refuse(error)
            raise error
        assert self._hasher is not None and self._buffer is not None
        if not hmac.compare_digest(self._hasher.digest(), bytes(self._trailer)):
            error = _fail("checksum mismatch: the stream was corrupted or tampered with")
            self._refuse(error)
            raise error
        arrays = _views(self._buffer, self._specs, copy=False)
        self._refuse(_fail("the stream was already decoded"))
        return _unflatten(self._tree, arrays)
