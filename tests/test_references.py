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


# -- references keep their aspect ratio (issue 16) ----------------------------------------------
from refcolor.inference import reference_size  # noqa: E402


def colorful(h: int, w: int, seed: int = 0) -> np.ndarray:
    return resize(skimage.data.astronaut(), h, w) if seed == 0 else resize(skimage.data.chelsea(), h, w)


def test_reference_size_keeps_the_aspect_ratio():
    assert reference_size(480, 854, 216, 384) == (216, 384)  # same aspect: exactly the working size
    assert reference_size(1920, 1080, 216, 384) == (216, 120)  # a portrait photo: the frames' height
    rh, rw = reference_size(1920, 1080, 216, 384, fit="pixels")  # or about the working pixel count
    assert rh % 8 == 0 and rw % 8 == 0 and abs(rh / rw - 1920 / 1080) < 0.05
    assert abs(rh * rw / (216 * 384) - 1) < 0.05
    ph, pw = reference_size(100, 2000, 216, 384)  # a panorama: capped at twice the working pixels
    assert ph * pw <= 2 * 216 * 384 * 1.05 and abs(pw / ph - 20) < 1.5
    assert min(reference_size(16, 4000, 64, 64)) == 16  # never below check_size's 16
    with pytest.raises(RefcolorError, match="fit"):
        reference_size(100, 100, 64, 64, fit="stretch")


@pytest.mark.parametrize("model", ["warp", "lite"])
def test_portrait_reference_is_encoded_on_its_own_grid(model):
    c = Colorizer(model, size=(64, 112), device="cpu")
    portrait = colorful(224, 128)
    c.set_reference(portrait)
    out = c.step(np.zeros((1, 64, 112), np.uint8))
    assert out.shape == (1, 64, 112, 3)
    rh, rw = reference_size(224, 128, 64, 112)
    assert rh > rw
    strides = [4] if model == "warp" else [4, 8]  # lite: raw keys at h/4, head 2 at h/8
    for keys, ab, s in zip(c._ref_state.keys, c._ref_state.ab, strides):
        assert keys.shape[-1] == ab.shape[-1] == (rh // s) * (rw // s)
    assert c._ref_state.lab.shape[-2:] == (64, 112)  # the colorization input keeps the frames' shape


@pytest.mark.parametrize("model", ["warp", "lite"])
def test_references_of_different_shapes_work_together(model):
    c = Colorizer(model, size=(64, 112), device="cpu")
    refs = [colorful(224, 128), colorful(90, 300, seed=1), colorful(64, 112)]
    c.set_reference(refs)
    out = c.step(np.zeros((2, 64, 112), np.uint8))
    assert out.shape == (2, 64, 112, 3)
    sizes = [reference_size(*r.shape[:2], 64, 112) for r in refs]
    assert len(set(sizes)) == 3
    assert c._ref_state.keys[0].shape[-1] == sum((h // 4) * (w // 4) for h, w in sizes)


def test_references_of_different_shapes_with_the_onnx_backend():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    refs = [colorful(224, 128), colorful(90, 300, seed=1)]
    gray = np.repeat(colorful(64, 112).mean(-1, keepdims=True).astype(np.uint8), 3, -1)[None]
    c = Colorizer("warp", size=(64, 112), device="cpu")
    c.set_reference(refs)
    expected = c.step(gray)[0].astype(int)
    c = Colorizer(c.model, size=(64, 112), device="cpu", backend="onnx")
    c.set_reference(refs)
    c.step(gray)  # exports the graph for these reference positions (this block runs in PyTorch)
    assert len(c._step.sessions) == 1
    assert np.abs(c.step(gray)[0].astype(int) - expected).max() <= 1  # run by ONNX Runtime
