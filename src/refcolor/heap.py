"""Keep the process heap from drifting on long videos (glibc only; a no-op elsewhere).

glibc serves an allocation above ``M_MMAP_THRESHOLD`` with its own ``mmap`` and unmaps it on
free, but by default the threshold *rises* to the size of every such block freed (up to
32 MiB). After the first few full-resolution frames (6-25 MB at 1080p) are freed, later ones
therefore come from the heaps of the three threads (decode, network, encode) and the resident
size swings by the fragments each heap keeps: docs/PERFORMANCE.md measured peaks 0-5.6 % higher
on 1,600 frames than on 100 with flat medians. Fixing the threshold (``mallopt`` turns the
adaptation off) returns every frame-sized buffer to the system when it is freed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
#: Blocks of at least this size get their own mapping: above any per-row or per-tile buffer,
#: below a 1080p gray frame (2 MB).
MMAP_THRESHOLD_BYTES = 1 << 20
_done = False


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold once per process; returns whether it was set."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
    return _done
