"""refcolor.samples: the one uint16 -> uint8 rounding (issue 17, smaller duplicates)."""
from __future__ import annotations

import numpy as np

from refcolor.samples import uint16_to_uint8

EVERY = np.arange(65536, dtype=np.uint16)


def test_the_two_former_formulas_agree_on_every_uint16_value():
    integer = ((EVERY.astype(np.uint32) + 128) // 257).astype(np.uint8)  # video._to_rgb8 before
    floating = (EVERY.astype(np.float32) / 257.0).round().astype(np.uint8)  # color.as_rgb_uint8 before
    assert np.array_equal(integer, floating)
    assert np.array_equal(uint16_to_uint8(EVERY), integer)
    assert uint16_to_uint8(EVERY)[[0, 128, 129, 385, 386, 65535]].tolist() == [0, 0, 1, 1, 2, 255]


def test_image_reading_and_frame_input_round_alike(tmp_path):
    import cv2

    from refcolor.color import as_rgb_uint8
    from refcolor.video import read_image

    gray16 = EVERY.reshape(256, 256)
    path = tmp_path / "every.png"
    assert cv2.imwrite(str(path), gray16)  # a 16-bit gray PNG holding every value once
    expect = np.repeat(uint16_to_uint8(gray16)[..., None], 3, axis=-1)
    assert np.array_equal(read_image(path), expect)
    assert np.array_equal(as_rgb_uint8(gray16), expect)
