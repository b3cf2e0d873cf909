"""Keep the heap from drifting with a video's length (glibc only; else no-ops).

Video output is encoded in segments of 480 frames, each with its own H.264 encoder whose
look-ahead holds tens of 1080p frames. When a segment's encoder is closed, glibc keeps most of
what it freed in the heaps of the threads that used it (decode, network, encode), so the next
encoder's buffers partly come from fresh pages and the resident size steps up a little at each
segment boundary: docs/PERFORMANCE.md measured peaks 0-6.8 % higher on 1,600 frames than on 100,
with quarter medians within 3 %. ``malloc_trim(0)`` after closing a segment returns those free
pages (an A/B gave 0.98x peak, within the run-to-run spread of 2-3 points).

The rest of the run-to-run spread came from the frame-sized buffers themselves (1080p planes of
6-25 MB, several per frame, made and freed by three threads). glibc's dynamic mmap threshold moves
up to the largest buffer freed, so after the first frames they all come from the heaps, and how
they fragment depends on thread timing: the peak of the same 100-frame run varied by 3-4 %.
``map_large_buffers`` fixes the threshold at 4 MiB, so each of them is its own mapping, returned
to the system when freed: the peaks of repeated runs then agree within 0.4 %, at about 8 % less
memory (benchmarks/heap.py, docs/PERFORMANCE.md). A threshold of 1 MiB also mapped the many
mid-sized buffers and made an I/O-bound run 1.8x slower (fresh pages to fault in); at 4 MiB
the cost is what the speed benchmarks report, and ``to_rgb_uint8`` reuses its own planes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

_trim = None
_mallopt = None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
FRAME_BUFFER_THRESHOLD = 4 * 2**20  # below one 1080p plane (6.2 MB RGB, 8.3 MB float32)


def _libc_function(name: str, argtypes: list):
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # musl or another libc
        return False
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def _malloc_trim():
    global _trim
    if _trim is None:
        _trim = _libc_function("malloc_trim", [ctypes.c_size_t])
    return _trim


def map_large_buffers(threshold: int = FRAME_BUFFER_THRESHOLD) -> bool:
    """``mallopt(M_MMAP_THRESHOLD, threshold)`` for this process: every block of at least
    ``threshold`` bytes gets its own mapping, given back when freed. True if it ran.

    The heap's free top is also capped at twice that (``M_TRIM_THRESHOLD``, what glibc's dynamic
    rule would pick for this threshold): a block is mapped only when no free heap space fits it,
    and a top that the dynamic rule let grow to 64 MiB would keep serving frame buffers."""
    global _mallopt
    if _mallopt is None:
        _mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if not _mallopt:
        return False
    return bool(_mallopt(_M_MMAP_THRESHOLD, int(threshold)) and _mallopt(_M_TRIM_THRESHOLD, 2 * int(threshold)))


def release_free_memory() -> bool:
    """``malloc_trim(0)``: returns free heap pages of every arena to the system. True if it ran."""
    fn = _malloc_trim()
    if not fn:
        return False
    fn(0)
    return True
