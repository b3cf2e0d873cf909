"""heap.pin_mmap_threshold: fixes glibc's mmap threshold (constant memory on long videos)."""
import ctypes.util
import sys

import numpy as np
import pytest

from refcolor.heap import pin_mmap_threshold


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_pin_is_set_once_and_large_buffers_still_work():
    if "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    assert pin_mmap_threshold() is True
    assert pin_mmap_threshold() is True  # idempotent
    frames = [np.full((1080, 1920, 3), i, np.uint8) for i in range(3)]  # 6 MB each: own mappings now
    assert [int(f[5, 7, 1]) for f in frames] == [0, 1, 2]
