"""heap.release_free_memory: malloc_trim after each output segment (constant memory on long videos)."""
import ctypes.util
import sys

import numpy as np
import pytest

from refcolor.heap import release_free_memory


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="malloc_trim is glibc's")
def test_trim_returns_freed_heap_pages():
    # many small blocks (below the mmap threshold) come from the heap; free every other one so the
    # heap cannot shrink from its top alone, then trim: RSS must fall by most of the freed bytes
    blocks = [np.ones(16 * 1024, np.uint8) for _ in range(4096)]  # 64 MiB of 16 KiB heap blocks
    keep = blocks[1::2]
    del blocks
    before = _rss_kb()
    assert release_free_memory() is True
    after = _rss_kb()
    assert before - after > 16 * 1024, (before, after)  # > 16 MiB of the ~32 MiB freed came back
    assert all(int(k[7]) == 1 for k in keep)  # live blocks untouched
