"""Sample-depth conversion shared by image reading (``video.read_image``) and frame input
(``color.as_rgb_uint8``)."""
from __future__ import annotations

import numpy as np


def uint16_to_uint8(samples: np.ndarray) -> np.ndarray:
    """16-bit samples rounded to the nearest 8-bit value, ``round(x / 257)`` (65535 -> 255).

    Integer arithmetic: ``(x + 128) // 257``. ``x / 257`` is never exactly halfway (257 is odd), so
    this equals the float form ``round(x / 257)`` for every uint16 value (tests/test_samples.py).
    """
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)
