"""Known-answer tests of refcolor.flow: DIS on a real shifted frame, occlusion, warps, cache, RAFT loading."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from refcolor.errors import RefcolorError
from refcolor.flow import (DISFlow, FlowCache, FlowEstimator, RaftFlow, build_flow, occlusion_mask,
                           raft_weights_path, warp, warp_torch)

DAVIS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "davis16-dev"
needs_davis = pytest.mark.skipif(not DAVIS.is_dir(), reason=f"DAVIS frames not found at {DAVIS}")


def davis_frame(seq: str = "blackswan", i: int = 0) -> np.ndarray:
    img = cv2.imread(str(DAVIS / seq / f"{i:05d}.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return np.ascontiguousarray(img[:, :, ::-1])


def synthetic(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


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


class ConstFlow(FlowEstimator):
    name = "const"

    def __init__(self, flow_xy=(0.0, 0.0)):
        self.flow_xy = flow_xy
        self.calls = 0

    def __call__(self, a, b):
        self.calls += 1
        out = np.zeros(a.shape[:2] + (2,), np.float32)
        out[...] = self.flow_xy
        return out


@needs_davis
def test_dis_recovers_shift_on_real_frame():
    big = davis_frame("blackswan", 0)
    h, w, (sx, sy) = 400, 760, (3, 2)
    y0, x0 = 40, 47
    a = np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w])
    # b(p) = a(p - s): the content moves by +s, so a(p) = b(p + s) and the flow a -> b is s
    b = np.ascontiguousarray(big[y0 - sy:y0 - sy + h, x0 - sx:x0 - sx + w])
    flow = DISFlow()(a, b)
    assert flow.shape == (h, w, 2) and flow.dtype == np.float32
    inner = flow[20:-20, 20:-20]
    err = np.hypot(inner[..., 0] - sx, inner[..., 1] - sy)
    assert np.median(err) < 0.5
    assert build_flow("dis").name == "dis"


def test_warp_integer_shift_is_exact():
    a = synthetic(50, 70).astype(np.float32)
    flow = np.zeros((50, 70, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3, 2
    out = warp(a, flow)
    np.testing.assert_array_equal(out[:-2, :-3], a[2:, 3:])
    # outside the frame the border is replicated (x + 3 and y + 2 clamp to the last column / row)
    np.testing.assert_array_equal(out[:-2, -3:], np.broadcast_to(a[2:, -1:], (48, 3, 3)))
    np.testing.assert_array_equal(out[-1, :-3], a[-1, 3:])


def test_warp_matches_warp_torch_subpixel():
    rng = np.random.default_rng(1)
    img = synthetic(48, 80, seed=2).astype(np.float32) / 255.0
    flow = (rng.standard_normal((48, 80, 2)) * 4).astype(np.float32)  # sub-pixel, some out of frame
    flow[:5] += 30.0
    ref = warp(img, flow)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    f = torch.from_numpy(flow).permute(2, 0, 1)[None]
    out = warp_torch(x, f)[0].permute(1, 2, 0).numpy()
    assert np.abs(out - ref).max() < 1e-4
    # 2-D and many-channel images take the same path
    assert np.abs(warp(img[..., 0], flow) - ref[..., 0]).max() == 0
    many = np.concatenate([img, img, img], axis=2)
    np.testing.assert_allclose(warp(many, flow), np.concatenate([ref] * 3, axis=2), atol=1e-6)
    # differentiable in both inputs
    x.requires_grad_(True)
    f.requires_grad_(True)
    warp_torch(x, f).sum().backward()
    assert x.grad is not None and f.grad is not None and torch.isfinite(f.grad).all()


def test_occlusion_consistent_translation_and_out_of_frame():
    h, w = 40, 60
    fw = np.zeros((h, w, 2), np.float32)
    fw[..., 0], fw[..., 1] = 3, 2
    mask = occlusion_mask(fw, -fw)
    assert mask.dtype == np.float32 and mask.shape == (h, w)
    expected = np.ones((h, w), np.float32)
    expected[:, w - 3:] = 0  # x + 3 > W - 1
    expected[h - 2:, :] = 0  # y + 2 > H - 1
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(occlusion_mask(fw, -fw, motion_boundary=True), expected)
    # backward flow that disagrees by 2 px: |w + w^|^2 = 4 > 0.01 * (13 + 13) + 0.5
    assert occlusion_mask(fw, -fw + np.float32([2, 0])).sum() == 0
    # within tolerance: disagreement 0.5 px -> 0.25 <= 0.76
    np.testing.assert_array_equal(occlusion_mask(fw, -fw + np.float32([0.5, 0])), expected)
    # a motion boundary: the left half still, the right half moving by 10 px
    step = np.zeros((h, w, 2), np.float32)
    step[:, w // 2:, 0] = 10
    mb = occlusion_mask(step, -step, motion_boundary=True)
    assert mb[:, w // 2 - 1].sum() == 0 and mb[:, :w // 2 - 1].all()


def test_flow_cache_computes_once(tmp_path):
    a, b = synthetic(32, 48, 0), synthetic(32, 48, 1)
    est = ConstFlow((1.25, -0.5))
    cache = FlowCache(tmp_path / "cache")
    first = cache.flow(est, a, b)
    second = cache.flow(est, a, b)
    assert est.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32 and second.shape == (32, 48, 2)
    cache.flow(est, b, a)  # other order: another entry
    assert est.calls == 2
    # keyed by a source file + frame pair; touching the file invalidates
    src = tmp_path / "video.mp4"
    src.write_bytes(b"x" * 10)
    cache.flow(est, a, b, source=src, pair=(0, 1))
    cache.flow(est, a, b, source=src, pair=(0, 1))
    assert est.calls == 3
    cache.flow(est, a, b, source=src, pair=(1, 2))
    assert est.calls == 4
    src.write_bytes(b"y" * 11)
    cache.flow(est, a, b, source=src, pair=(0, 1))
    assert est.calls == 5
    with pytest.raises(RefcolorError):
        cache.flow(est, a, b, source=src)
    # a frame folder: a new file in it invalidates its entries
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "00000.jpg").write_bytes(b"a")
    cache.flow(est, a, b, source=folder, pair=(0, 1))
    cache.flow(est, a, b, source=folder, pair=(0, 1))
    assert est.calls == 6
    (folder / "00001.jpg").write_bytes(b"b")
    cache.flow(est, a, b, source=folder, pair=(0, 1))
    assert est.calls == 7


def test_build_flow_without_weights(hub_dir):
    assert isinstance(build_flow("auto"), DISFlow)
    with pytest.raises(RefcolorError) as e:
        build_flow("raft")
    msg = str(e.value)
    assert raft_weights_path("large").name in msg and str(hub_dir / "checkpoints") in msg
    with pytest.raises(RefcolorError, match="raft_small"):
        build_flow("raft_small")
    with pytest.raises(RefcolorError, match="unknown flow estimator"):
        build_flow("farneback")


def test_raft_loads_local_weights_only(hub_dir):
    """A randomly initialised RAFT-small saved under torchvision's file name: loaded, never fetched."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = raft_weights_path("small")
    path.parent.mkdir(parents=True)
    torch.save(raft_small(weights=None).state_dict(), path)
    est = build_flow("auto")
    assert isinstance(est, RaftFlow) and est.name == "raft" and est.variant == "small"
    est.num_flow_updates = 2  # random weights: the refinement count does not matter here
    flow = est(synthetic(60, 90, 0), synthetic(60, 90, 1))  # not a multiple of 8: padded, cropped
    assert flow.shape == (60, 90, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RefcolorError, match="cannot load"):
        build_flow("raft_small")
