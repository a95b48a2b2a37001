"""A content-addressed blob store: weights blobs named by their sha256, checked on every read.

The default store is a local directory (``<root>/<first two hex digits>/<sha256>``), shared by learners on
one machine or through a shared file system. :meth:`BlobStore.get` returns bytes only after their sha256
matched the name asked for, so a reader that gets bytes back can decode them (typed, never unpickled) knowing
they are the bytes the contract recorded. Learners on other machines can fetch from any service that
implements ``get``/``put`` the same way (e.g. the proposer's learner server): the hash check stays here.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator, Union

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MAX_BYTES = 2 * 1024**3


class BlobError(RuntimeError):
    """Base class of blob-store errors."""


class BlobMissingError(BlobError, KeyError):
    """No blob with that hash is stored."""


class BlobIntegrityError(BlobError):
    """The stored bytes do not hash to their name: tampered with or corrupted."""


def blob_hash(data: bytes) -> str:
    """The hex sha256 of ``data``: a blob's name and the hash proposed on chain."""
    return hashlib.sha256(data).hexdigest()


def normalise_hash(value: Union[str, bytes]) -> str:
    """A 64-digit lower-case hex sha256 from hex text (with or without 0x) or 32 raw bytes."""
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value).lower().removeprefix("0x")
    if not HASH_RE.match(text):
        raise ValueError(f"blob hash must be 32 bytes (64 hex digits), got {str(value)[:80]!r}")
    return text


class BlobStore:
    """Blobs in a local directory, named by their sha256."""

    def __init__(self, root: Union[str, Path], max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: Union[str, bytes]) -> Path:
        name = normalise_hash(digest)
        return self.root / name[:2] / name

    def put(self, data: bytes) -> str:
        """Store ``data`` (atomically, once) and return its hex sha256."""
        digest = blob_hash(data)
        target = self.path(digest)
        if target.is_file() and blob_hash(target.read_bytes()) == digest:
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def has(self, digest: Union[str, bytes]) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: Union[str, bytes]) -> bytes:
        """The bytes named ``digest``, after checking that they hash to it."""
        name = normalise_hash(digest)
        target = self.path(name)
        if not target.is_file():
            raise BlobMissingError(f"no blob {name} in {self.root}")
        size = target.stat().st_size
        if size > self.max_bytes:
            raise BlobIntegrityError(f"blob {name} is {size} bytes, over the limit of {self.max_bytes}")
        data = target.read_bytes()
        actual = blob_hash(data)
        if actual != name:
            raise BlobIntegrityError(f"blob {name} in {self.root} hashes to {actual}: tampered with or corrupted")
        return data

    def __iter__(self) -> Iterator[str]:
        for path in sorted(self.root.glob("??/*")):
            if HASH_RE.match(path.name):
                yield path.name
