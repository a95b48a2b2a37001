"""The digest algorithms of the weights format's trailer (:mod:`colearn.encoding`): which exist, which this
installation can compute, and a hash object for each."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from typing import Any

DIGEST_SIZES = {"sha256": 32, "blake3": 32, "xxh3-128": 16}
"""Trailer size in bytes of each format-2 digest algorithm."""
DIGESTS = tuple(DIGEST_SIZES)
"""Digest algorithms of the format-2 trailer: sha256 and blake3 (256-bit cryptographic hashes) and xxh3-128
(a 128-bit checksum for authenticated transports)."""
_DIGEST_PACKAGES = {"blake3": "blake3", "xxh3-128": "xxhash"}

@functools.lru_cache(maxsize=None)
def available_digests() -> tuple[str, ...]:
    """The trailer digests this installation can compute (``blake3`` and ``xxh3-128`` need the ``blake3`` and
    ``xxhash`` packages)."""
    return tuple(name for name in DIGESTS
                 if name not in _DIGEST_PACKAGES or importlib.util.find_spec(_DIGEST_PACKAGES[name]) is not None)


def _install_hint(name: Any) -> str:
    return f" (pip install {_DIGEST_PACKAGES[name]})" if name in _DIGEST_PACKAGES else ""


def new_digest(name: str, data: bytes = b"") -> Any:
    """A hash object (``update``/``digest``) for the trailer digest ``name``; ValueError if unavailable."""
    if name == "sha256":
        return hashlib.sha256(data)
    if name in available_digests():
        if name == "blake3":
            import blake3

            return blake3.blake3(data)
        import xxhash

        return xxhash.xxh3_128(data)
    raise ValueError(f"digest must be one of {available_digests()} here, got {name!r}{_install_hint(name)}")
