"""Known answers of the non-local warp (Eq. 1-3)."""
import numpy as np
import pytest
import torch

from refcolor.models.correspondence import center_normalize, nonlocal_warp


def random_features(k=32, h=12, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, k, h, w, generator=g), torch.rand(1, 2, h, w, generator=g) * 2 - 1


def test_identical_target_returns_reference_colors():
    feat, ab = random_features()
    key = center_normalize(feat.flatten(2))
    warped, sim = nonlocal_warp(key[:, None], key, ab.flatten(2), tau=0.01)
    assert torch.allclose(warped[0, 0], ab.flatten(2)[0], atol=1e-4)
    assert torch.allclose(sim, torch.ones_like(sim), atol=1e-5)  # S = max cosine = 1


def test_warp_follows_a_shift():
    feat, ab = random_features()
    shifted = torch.roll(feat, shifts=(2, 3), dims=(2, 3))
    query = center_normalize(shifted.flatten(2))[:, None]
    warped, _ = nonlocal_warp(query, center_normalize(feat.flatten(2)), ab.flatten(2), tau=0.01)
    expected = torch.roll(ab, shifts=(2, 3), dims=(2, 3)).flatten(2)
    assert torch.allclose(warped[0, 0], expected[0], atol=1e-4)


def test_chunking_does_not_change_the_result():
    feat, ab = random_features()
    key = center_normalize(feat.flatten(2))
    query = torch.stack([key, center_normalize(feat.flip(-1).flatten(2))], dim=1)
    a, sa = nonlocal_warp(query, key, ab.flatten(2), tau=0.05, chunk=4096)
    b, sb = nonlocal_warp(query, key, ab.flatten(2), tau=0.05, chunk=7)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(sa, sb, atol=1e-6)


def test_high_tau_averages_colors():
    feat, ab = random_features()
    key = center_normalize(feat.flatten(2))
    warped, _ = nonlocal_warp(key[:, None], key, ab.flatten(2), tau=1e4)
    mean = ab.flatten(2).mean(-1, keepdim=True)
    assert torch.allclose(warped[0, 0], mean[0].expand_as(warped[0, 0]), atol=1e-3)


def test_real_photo_warp_on_pretrained_features():
    """The training-free warp model on a real photo: itself as target gives back its colors,
    a shifted copy gets the shifted colors (away from the borders)."""
    skimage = pytest.importorskip("skimage")
    from refcolor.color import normalize_lab, rgb_to_lab, uint8_to_tensor
    from refcolor.models.warp import build_warp_model
    import torch.nn.functional as F

    model = build_warp_model().eval()
    rgb = F.interpolate(uint8_to_tensor(skimage.data.chelsea()), size=(128, 192), mode="area")
    lab = normalize_lab(rgb_to_lab(rgb))
    with torch.inference_mode():
        ref = model.encode_reference(lab)
        same, _ = model.step(lab[:, None, :1], ref, None)
        shifted_l = torch.roll(lab[:, :1], shifts=(0, 16), dims=(2, 3))
        moved, _ = model.step(shifted_l[:, None], ref, None)
    ab_small = F.interpolate(F.adaptive_avg_pool2d(lab[:, 1:], (32, 48)), size=(128, 192), mode="bilinear", align_corners=False)
    err_same = (same[0, 0] - ab_small[0]).abs().mean().item()
    assert err_same < 0.01, err_same  # normalised ab units (1.1 ab)
    expected = torch.roll(ab_small, shifts=(0, 16), dims=(2, 3))[..., 24:-24]
    err_moved = (moved[0, 0][..., 24:-24] - expected[0]).abs().mean().item()
    baseline = (ab_small[0][..., 24:-24] - expected[0]).abs().mean().item()  # not following the shift
    assert err_moved < 0.5 * baseline, (err_moved, baseline)


def test_warp_runs_in_fp32_under_autocast():
    """At tau = 0.01 bf16 logits are off by 0.2-0.4: the correlation and softmax stay fp32."""
    g = torch.Generator().manual_seed(0)
    q = center_normalize(torch.randn(1, 32, 40, generator=g))[:, None]
    k = center_normalize(torch.randn(1, 32, 50, generator=g))
    v = torch.rand(1, 2, 50, generator=g)
    want, s_want = nonlocal_warp(q, k, v, 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, s_got = nonlocal_warp(q.bfloat16(), k, v, torch.tensor(0.01))
    assert got.dtype == torch.float32 and s_got.dtype == torch.float32
    # the only difference left is the bf16 rounding of the query itself
    ref, _ = nonlocal_warp(q.bfloat16().float(), k, v, 0.01)
    assert torch.allclose(got, ref, atol=1e-6)
