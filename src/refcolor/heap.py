"""Hand freed heap memory back to the system between output segments (glibc only; else a no-op).

Video output is encoded in segments of 480 frames, each with its own H.264 encoder whose
look-ahead holds tens of 1080p frames. When a segment's encoder is closed, glibc keeps most of
what it freed in the heaps of the threads that used it (decode, network, encode), so the next
encoder's buffers partly come from fresh pages and the resident size steps up a little at each
segment boundary: docs/PERFORMANCE.md measured peaks 0-6.8 % higher on 1,600 frames than on 100,
with quarter medians within 3 %. ``malloc_trim(0)`` after closing a segment returns those free
pages (an A/B gave 0.98x peak, within the run-to-run spread of 2-3 points).

Measured and rejected: fixing glibc's mmap threshold at 1 MiB (every frame-sized buffer its own
mapping) flattened the peaks (+0.6 % at 1,600 frames for ``paper``) but made an I/O-bound 1080p
run 1.8x slower (754 against 400-420 ms/frame: fresh pages to fault in for every buffer). At
4 MiB (session 11) it still cost 6-12 % of the default's end-to-end speed at 216x384 for 7-9 %
less peak memory, while the peaks of 1,600 vs 100 frames were already within +1.4 to +3.5 %
without it once the full-resolution path stopped making frame-sized temporaries (convert.py:
the gray table written in place, L allocated by NumPy, the a/b planes reused); see
benchmarks/heap.py and docs/PERFORMANCE.md.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_trim = None


def _malloc_trim():
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
                _trim = fn
            except (OSError, AttributeError):  # musl or another libc
                pass
    return _trim


def release_free_memory() -> bool:
    """``malloc_trim(0)``: returns free heap pages of every arena to the system. True if it ran."""
    fn = _malloc_trim()
    if not fn:
        return False
    fn(0)
    return True
