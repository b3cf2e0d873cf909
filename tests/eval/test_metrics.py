"""Known-answer tests of refcolor.eval.metrics (PSNR, SSIM, colorfulness, warp error, LPIPS/FID availability)."""
from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest
import torch

from refcolor.errors import RefcolorError
from refcolor.eval import perceptual
from refcolor.eval.metrics import (PSNR_CAP, WE_SCALE, FIDMetric, LPIPSMetric, Unavailable, colorfulness,
                                   frame_metrics, mean_psnr, psnr, ssim, warp_error)
from refcolor.flow import DISFlow, FlowCache, FlowEstimator

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis16-dev"
needs_davis = pytest.mark.skipif(not DAVIS.is_dir(), reason=f"DAVIS frames not found at {DAVIS}")


def davis_frame(seq: str = "blackswan", i: int = 0) -> np.ndarray:
    img = cv2.imread(str(DAVIS / seq / f"{i:05d}.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return np.ascontiguousarray(img[:, :, ::-1])


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A fresh, empty torch hub dir; any download attempt fails the test."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


# ---------------------------------------------------------------- PSNR, SSIM, colorfulness

def test_psnr_known_answers():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)  # 48.13 dB
    assert psnr(a, a + 1) == pytest.approx(48.1308036, abs=1e-6)
    assert mean_psnr([float("inf"), 40.0]) == pytest.approx((PSNR_CAP + 40.0) / 2)
    with pytest.raises(RefcolorError):
        psnr(a, np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(RefcolorError):
        psnr(a.astype(np.float32), a)


def test_colorfulness_known_answers():
    gray = np.full((5, 7, 3), 123, np.uint8)
    assert colorfulness(gray) == 0.0
    two = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)  # red and blue
    # rg = (255, 0), yb = (127.5, -255): std 127.5 and 191.25, means 127.5 and -63.75
    expected = math.sqrt(127.5 ** 2 + 191.25 ** 2) + 0.3 * math.sqrt(127.5 ** 2 + 63.75 ** 2)
    assert colorfulness(two) == pytest.approx(expected, abs=1e-9)
    assert colorfulness(two) == pytest.approx(272.61869, abs=1e-4)


def test_ssim_of_equal_images_is_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(RefcolorError):
        ssim(a[:4, :4], a[:4, :4])  # smaller than the 7x7 window


@needs_davis
def test_psnr_ssim_agree_with_scikit_image_on_davis():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    gt = davis_frame("dog", 5)
    rng = np.random.default_rng(1)
    noisy = np.clip(gt.astype(np.int16) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(gt, (7, 7), 2.0)
    for pred in (noisy, blurred):
        assert psnr(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=255), abs=1e-6)
        ref = structural_similarity(gt, pred, channel_axis=-1, data_range=255)
        assert ssim(pred, gt) == pytest.approx(ref, abs=1e-4)
    fm = frame_metrics([noisy, gt], [gt, gt], with_ssim=True)
    assert fm.psnr[1] == float("inf") and fm.mean_psnr == pytest.approx((fm.psnr[0] + PSNR_CAP) / 2)
    assert fm.colorfulness[1] == pytest.approx(colorfulness(gt)) and fm.ssim[1] == pytest.approx(1.0)


# ---------------------------------------------------------------- warp error

class KnownFlow(FlowEstimator):
    """Returns the true flow of frames cut from one image at known offsets: a(p) = b(p + o_a - o_b)."""

    name = "known"

    def __init__(self, frames, offsets):
        self.frames, self.offsets, self.calls = frames, offsets, 0

    def _index(self, x):
        return next(i for i, f in enumerate(self.frames) if np.array_equal(f, x))

    def __call__(self, a, b):
        self.calls += 1
        (xa, ya), (xb, yb) = self.offsets[self._index(a)], self.offsets[self._index(b)]
        flow = np.empty(a.shape[:2] + (2,), np.float32)
        flow[..., 0], flow[..., 1] = xa - xb, ya - yb
        return flow


def test_warp_error_of_static_video_is_zero():
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (5, 5), 2)
    video = [frame.copy() for _ in range(4)]
    assert warp_error(video, video, KnownFlow(video, [(0, 0)] * 4)) == 0.0
    assert warp_error(video, video, DISFlow()) < 1e-6


@needs_davis
def test_warp_error_of_translation_with_true_flow_is_zero():
    big = davis_frame("car-shadow", 0)
    h, w = 380, 700
    offsets = [(20 + 3 * t, 30 + 2 * t) for t in range(5)]  # camera pans by (3, 2) px per frame
    gt = [np.ascontiguousarray(big[y:y + h, x:x + w]) for x, y in offsets]
    est = KnownFlow(gt, offsets)
    we = warp_error(gt, gt, est)
    assert we < 1e-4
    assert est.calls == 2 * 4
    # a flickering output on the same motion: constant frames alternating 100 and 110 -> (10/255)^2
    flicker = [np.full((h, w, 3), 100 + 10 * (t % 2), np.uint8) for t in range(5)]
    assert warp_error(flicker, gt, est) == pytest.approx((10 / 255) ** 2, rel=1e-5)
    assert WE_SCALE == 1000


def test_warp_error_needs_two_frames_and_matching_lengths():
    f = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(RefcolorError, match="warp error needs at least 2 frames"):
        warp_error([f], [f], DISFlow())
    with pytest.raises(RefcolorError):
        warp_error([f, f], [f], DISFlow())


def test_warp_error_uses_the_cache(tmp_path):
    rng = np.random.default_rng(3)
    gt = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    est = KnownFlow(gt, [(0, 0), (1, 0), (2, 1)])
    cache = FlowCache(tmp_path)
    src = tmp_path / "frames"
    src.mkdir()
    first = warp_error(gt, gt, est, cache=cache, source=src)
    assert est.calls == 4
    assert warp_error(gt, gt, est, cache=cache, source=src) == first and est.calls == 4
    assert warp_error(gt, gt, est, cache=cache) == first and est.calls == 8  # pixel-keyed entries


# ---------------------------------------------------------------- LPIPS / FID availability

def test_lpips_fid_unavailable_without_weights(hub_dir):
    img = np.zeros((32, 32, 3), np.uint8)
    lp = LPIPSMetric()
    path = hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert lp.available is False and lp.reason == f"weights not found: {path}"
    value = lp(img, img)
    assert isinstance(value, Unavailable) and str(value) == f"n/a (weights not found: {path})"
    assert f"{value:.3f}" == str(value)
    fid = FIDMetric()
    assert fid.available is False and "pt_inception-2015-12-05-6726825d.pth" in fid.reason
    fid.update(img[None], img[None])
    assert isinstance(fid.compute(), Unavailable) and str(hub_dir) in str(fid.compute())


def test_unavailable_when_package_missing(hub_dir, monkeypatch):
    monkeypatch.setattr(perceptual, "_package_missing", lambda module: True)
    assert LPIPSMetric().reason == "package lpips not installed"
    assert str(FIDMetric().compute()) == "n/a (package pytorch-fid not installed)"


def _crops(seed: int, n: int, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    ys, xs = rng.integers(0, 120 - size, n), rng.integers(0, 160 - size, n)
    return np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def test_lpips_loads_local_alexnet_only(hub_dir):
    """A random AlexNet saved under torchvision's file name: loaded from disk, nothing fetched."""
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    state = {}
    for i, shape in shapes.items():  # the layout of torchvision's AlexNet.features
        state[f"features.{i}.weight"] = torch.randn(shape) * (2.0 / np.prod(shape[1:])) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(shape[0])
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(state, hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth")
    lp = LPIPSMetric()
    assert lp.available and lp.reason == ""
    a, b = _crops(0, 2, 64)
    assert lp(a, a) == 0.0
    d = lp(a, b)
    assert isinstance(d, float) and d > 0
    torch.save({"features.0.weight": torch.zeros(1)}, hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(RefcolorError):
        LPIPSMetric()(a, b)


def test_fid_loads_local_inception_only(hub_dir):
    """A random pytorch-fid Inception saved under its file name: loaded from disk, nothing fetched."""
    pytest.importorskip("pytorch_fid")
    import torchvision
    from pytorch_fid import inception

    torch.manual_seed(0)
    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(torchvision.models.inception.Inception3, "load_state_dict", lambda *a, **k: None):
        state = inception.fid_inception_v3().state_dict()
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(state, hub_dir / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    fid = FIDMetric(dims=64)
    assert fid.available
    a, b = _crops(1, 12), _crops(2, 12)
    fid.update(a, a)
    same = fid.compute()
    assert abs(same) < 1e-8
    fid.reset()
    fid.update(a[:6], 255 - b[:6])
    fid.update(list(a[6:11]), list(255 - b[6:11]))
    fid.update([a[11], a[11, :30, :20]], [255 - b[11], 255 - b[11, :20]])  # sizes may differ
    d = fid.compute()
    assert isinstance(d, float) and math.isfinite(d) and d > 1000 * abs(same)
    fid.reset()
    fid.update(a[:1], a[:1])
    with pytest.raises(RefcolorError, match="at least 2"):
        fid.compute()


def test_frechet_distance_matches_pytorch_fid():
    from refcolor.eval.perceptual import frechet_distance

    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((50, 8)), rng.standard_normal((40, 8)) * 1.5 + 0.3
    stats = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its scipy `disp` deprecation
        ref = fid_score.calculate_frechet_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(ref, rel=1e-9)
    # 1-D known answer: (m1 - m2)^2 + (s1 - s2)^2 for variances s1^2, s2^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(5.0)
