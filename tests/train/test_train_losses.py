"""Each training loss on inputs with a known answer."""
import warnings

import pytest
import torch

from refcolor.flow import warp_torch
from refcolor.train import losses as L
from refcolor.train.discriminator import PatchDiscriminator


def test_l1_of_equal_is_zero_and_known_value():
    x = torch.rand(2, 3, 2, 8, 8)
    assert L.l1_loss(x, x) == 0
    assert torch.isclose(L.l1_loss(torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 0.25)), torch.tensor(0.25))


def test_temporal_zero_for_a_perfectly_warped_sequence():
    g = torch.Generator().manual_seed(0)
    ab0 = torch.rand(1, 2, 24, 32, generator=g) * 2 - 1
    flow = torch.stack([torch.full((24, 32), 1.5), torch.full((24, 32), -0.75)])[None]  # frame 1 -> frame 0
    ab1 = warp_torch(ab0, flow)
    ab = torch.stack([ab0, ab1], dim=1)  # B,T,2,H,W
    mask = torch.ones(1, 1, 1, 24, 32)
    assert L.temporal_loss(ab, flow[:, None], mask).item() == pytest.approx(0.0, abs=1e-7)
    # a change where the mask is 0 costs nothing; where it is 1 it costs its mean
    ab_bad = ab.clone()
    ab_bad[:, 1, :, :, :16] += 0.5
    half = mask.clone()
    half[..., :16] = 0
    assert L.temporal_loss(ab_bad, flow[:, None], half).item() == pytest.approx(0.0, abs=1e-7)
    assert L.temporal_loss(ab_bad, flow[:, None], mask).item() == pytest.approx(0.25, abs=1e-5)


def test_smoothness_zero_for_constant_chroma_and_positive_for_noise():
    lab = torch.cat([torch.rand(2, 1, 16, 16) * 2 - 1, torch.zeros(2, 2, 16, 16)], 1)
    const = torch.full((2, 2, 16, 16), 0.3)
    assert L.smoothness_loss(const, lab).item() == pytest.approx(0.0, abs=1e-7)
    noisy = torch.rand(2, 2, 16, 16)
    assert L.smoothness_loss(noisy, torch.zeros(2, 3, 16, 16)).item() > 0.05


def test_smoothness_respects_ground_truth_edges():
    # two flat regions with a strong L edge: a prediction that follows the edge is not penalised
    lab = torch.zeros(1, 3, 8, 8)
    lab[:, 0, :, 4:] = 1.0  # L jumps from 50 to 100 at column 4
    ab = torch.zeros(1, 2, 8, 8)
    ab[:, :, :, 4:] = 0.5
    assert L.smoothness_loss(ab, lab).item() < 1e-6


def test_hinge_values_on_known_logits():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    # relu(1-2)=0, relu(1-0.5)=0.5 -> 0.25 ; relu(1-2)=0, relu(1+0.5)=1.5 -> 0.75
    assert L.hinge_d_loss(real, fake).item() == pytest.approx(1.0)
    assert L.hinge_g_loss(fake).item() == pytest.approx(0.75)
    assert L.hinge_d_loss(torch.tensor([5.0]), torch.tensor([-5.0])).item() == 0


def test_warp_loss_zero_when_the_warp_equals_the_pooled_truth():
    ab = torch.rand(1, 2, 2, 16, 24)
    pooled = torch.nn.functional.avg_pool2d(ab.flatten(0, 1), 8).view(1, 2, 2, 2, 3)
    assert L.warp_loss([pooled, pooled], ab).item() == pytest.approx(0.0, abs=1e-7)
    assert L.warp_loss([pooled + 0.1], ab).item() == pytest.approx(0.1, abs=1e-6)


def test_chroma_loss_one_sided():
    gt = torch.zeros(1, 2, 4, 4)
    gt[:, 0] = 0.4
    assert L.chroma_loss(gt, gt).item() == pytest.approx(0.0, abs=1e-3)
    assert L.chroma_loss(2 * gt, gt).item() == pytest.approx(0.0, abs=1e-3)  # more saturated: free
    assert L.chroma_loss(0.5 * gt, gt).item() == pytest.approx(0.2, abs=1e-3)


def test_perceptual_of_equal_is_zero_and_the_standin_is_announced(monkeypatch, tmp_path):
    monkeypatch.setattr(L, "vgg19_path", lambda: tmp_path / "missing.pth")
    monkeypatch.setattr(L.PerceptualLoss, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        perc = L.PerceptualLoss("auto")
    assert any("stand-in" in str(w.message) for w in caught)
    assert "stand-in" in perc.network
    x = torch.rand(2, 3, 64, 64)
    assert perc(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert perc(x, x.flip(-1)).item() > 0
    with pytest.raises(Exception, match="VGG19"):
        L.PerceptualLoss("vgg19")


def test_discriminator_patch_logits_shape():
    d = PatchDiscriminator(8)
    assert d(torch.rand(2, 3, 64, 96)).shape[:2] == (2, 1)
