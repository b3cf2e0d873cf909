"""Several references: the warp attends over the union of their positions."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refcolor.color import rgb_to_lab, uint8_to_tensor
from refcolor.errors import RefcolorError
from refcolor.inference import Colorizer

skimage = pytest.importorskip("skimage")


def resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    t = F.interpolate(uint8_to_tensor(rgb), size=(h, w), mode="area")
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def mean_ab(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(uint8_to_tensor(rgb))[0, 1:].mean(dim=(1, 2)).numpy()


def test_each_object_takes_colors_from_the_reference_that_contains_it():
    cat = resize(skimage.data.chelsea(), 128, 128)  # orange-brown cat
    sky = resize(skimage.data.astronaut()[:200, 250:450], 128, 128)  # astronaut: red/blue/white
    target = np.concatenate([cat, sky], axis=1)  # the two objects side by side, then made gray
    gray = np.repeat(target.mean(-1, keepdims=True).astype(np.uint8), 3, -1)
    c = Colorizer("warp", size=(128, 256), device="cpu")
    c.set_reference([cat, sky])
    out = c.step(gray[None])[0]
    left, right = out[:, :128], out[:, 128:]
    # Each half is closer in mean chroma to its own reference than to the other one.
    assert np.linalg.norm(mean_ab(left) - mean_ab(cat)) < np.linalg.norm(mean_ab(left) - mean_ab(sky))
    assert np.linalg.norm(mean_ab(right) - mean_ab(sky)) < np.linalg.norm(mean_ab(right) - mean_ab(cat))
    # And with only the cat as reference, the right half cannot get the astronaut's colors.
    c.set_reference(cat)
    only_cat = c.step(gray[None])[0][:, 128:]
    assert np.linalg.norm(mean_ab(right) - mean_ab(sky)) < np.linalg.norm(mean_ab(only_cat) - mean_ab(sky))


def test_reference_errors():
    c = Colorizer("warp", size=(64, 64), device="cpu")
    with pytest.raises(RefcolorError, match="color reference"):
        c.set_reference(np.full((32, 32, 3), 100, np.uint8))
    with pytest.raises(RefcolorError, match="set_reference"):
        c.step(np.zeros((1, 64, 64), np.uint8))
    with pytest.raises(RefcolorError, match="at least one"):
        c.set_reference([])
