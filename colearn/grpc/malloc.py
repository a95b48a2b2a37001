"""Keep glibc's malloc from mapping and unmapping memory for every chunk message.

Every chunk sent or received is a fresh ``bytes`` of about 1 MiB. With glibc's default, adaptive thresholds,
freeing such a message often hands the top of the heap back to the kernel (trimming), and the next message's
pages then fault in again, a page fault per 4 KiB: measured 1.6 ms of a 4 MB upload's 7 ms (5.2 ms tuned),
while the same bytes made without the stream header in between stayed cheap, so it depends on the order of
allocations, not on the amount. :func:`tune_malloc` fixes the two thresholds so that chunk-sized blocks always
come from the heap and up to :data:`TRIM_THRESHOLD` of freed memory at the heap's top is kept for reuse.

It changes the whole process, so it is applied by what streams chunks (learner servers and remote learners),
once, and only on glibc; ``COLEARN_MALLOC_TUNING=0`` turns it off. Allocations larger than
:data:`MMAP_THRESHOLD` (model arrays, receive buffers) are mapped and returned as before.
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading
from typing import Optional

MMAP_THRESHOLD = 8 * 1024**2
"""Blocks at least this large are memory-mapped (glibc's adaptive default ends up anywhere from 128 KiB to
32 MiB); chunk messages (at most 3 MiB) stay below it."""
TRIM_THRESHOLD = 64 * 1024**2
"""Freed memory at the top of the heap is returned to the kernel only beyond this much."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_lock = threading.Lock()
_applied: Optional[bool] = None


def tune_malloc() -> bool:
    """Apply the thresholds once per process (glibc only, unless ``$COLEARN_MALLOC_TUNING`` is 0); True if
    they are in effect."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _apply()
        return _applied


def _apply() -> bool:
    if os.environ.get("COLEARN_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - glibc always has mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
