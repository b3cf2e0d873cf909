"""heap.release_free_memory: malloc_trim after each output segment (constant memory on long videos)."""
import ctypes.util
import subprocess
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


_GIVEN_BACK = """
import sys
import numpy as np
from refcolor.heap import FRAME_BUFFER_THRESHOLD, map_large_buffers

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

fixed = sys.argv[1] == "fixed"
if fixed:
    assert map_large_buffers() is True
size = 2 * FRAME_BUFFER_THRESHOLD
for _ in range(3):  # raises glibc's dynamic threshold above `size`
    np.ones(size, np.uint8)
block = np.ones(size, np.uint8)
before = rss_kb()
del block
print((before - rss_kb()) / (size / 1024))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""),
                    reason="mallopt is glibc's")
def test_large_buffers_are_given_back_when_freed():
    # glibc's dynamic threshold moves up to the largest mapped block freed, after which blocks of
    # that size come from the heap and stay resident when freed; with the threshold fixed, each is
    # its own mapping and freeing it lowers the RSS at once. Fresh processes: free heap space left
    # by other tests would serve the block without a mapping either way.
    def given_back(mode: str) -> float:
        run = subprocess.run([sys.executable, "-c", _GIVEN_BACK, mode], capture_output=True, text=True, check=True)
        return float(run.stdout.split()[-1])

    assert given_back("fixed") > 0.9
    assert given_back("dynamic") < 0.1  # the test can fail: without the fix the block stays resident
