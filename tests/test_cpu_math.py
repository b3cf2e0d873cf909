"""Flushing denormals leaves refcolor's output unchanged (it only drops terms below 1e-37)."""
import numpy as np
import torch
from skimage import data
from skimage.transform import resize

from refcolor.cpu_math import flush_denormals
from refcolor.inference import Colorizer


def _frames():
    rgb = data.astronaut()
    ref = (resize(rgb, (96, 96), anti_aliasing=True) * 255).round().astype(np.uint8)
    gray = np.stack([np.roll(ref, s, axis=1).mean(-1).astype(np.uint8) for s in (0, 5, 11)])
    return ref, gray


def test_flush_denormal_output_is_identical():
    ref, gray = _frames()
    outs = []
    try:
        for flush in (False, True):
            c = Colorizer("lite", device="cpu", size=(96, 96))
            torch.set_flush_denormal(flush)
            c.set_reference(ref)
            outs.append(c.step(gray))
    finally:
        torch.set_flush_denormal(False)
    assert np.array_equal(outs[0], outs[1])


def test_flush_denormals_turns_flushing_on():
    torch.set_flush_denormal(False)
    try:
        assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
        flush_denormals()
        assert torch.tensor([1e-40], dtype=torch.float32).item() == 0.0  # a denormal literal flushes
    finally:
        torch.set_flush_denormal(False)  # the process default, as the rest of the suite expects
