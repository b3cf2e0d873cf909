"""Backbones: shapes, gradients, offline weight loading and the Lite0 key mapping."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refcolor.errors import RefcolorError
from refcolor.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_MEAN,
    LITE0_STD,
    Backbone,
    build_backbone,
    lite0_classifier,
    load_lite0_weights,
    resnet101_weights_path,
)

CHANNELS = {"resnet101": (768, 2048), "efficientnet_lite0": (40, 152)}
STRIDE4_TAP = {"resnet101": "relu2_3", "efficientnet_lite0": "b1"}
STRIDE8_TAP = {"resnet101": "relu3_3", "efficientnet_lite0": "b2"}
TAPS = {
    "resnet101": {"relu1_2": (256, 2), "relu2_3": (512, 4), "relu3_3": (1024, 8), "relu3_19": (1024, 8)},
    "efficientnet_lite0": {"b0": (16, 2), "b1": (24, 4), "b2": (40, 8), "b4": (112, 16)},
}


@pytest.fixture(scope="module", params=sorted(CHANNELS))
def random_backbone(request: pytest.FixtureRequest) -> tuple[str, Backbone]:
    torch.manual_seed(0)
    return request.param, build_backbone(request.param, pretrained=False)


def test_shapes_channels_and_taps(random_backbone: tuple[str, Backbone]) -> None:
    name, bb = random_backbone
    c_low, c_high = CHANNELS[name]
    assert (bb.low_channels, bb.high_channels) == (c_low, c_high)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        r_low, r_high = bb(x)
        taps = bb.taps(x)
    assert r_low.shape == (1, c_low, 16, 24)
    assert r_high.shape == (1, c_high, 8, 12)
    assert set(taps) == set(TAPS[name])
    for key, (ch, stride) in TAPS[name].items():
        assert taps[key].shape == (1, ch, 64 // stride, 96 // stride), key


def test_odd_size_follows_the_tap_sizes(random_backbone: tuple[str, Backbone]) -> None:
    name, bb = random_backbone
    x = torch.rand(2, 3, 70, 100)
    with torch.no_grad():
        r_low, r_high = bb(x)
        taps = bb.taps(x)
    s4, s8 = taps[STRIDE4_TAP[name]].shape[-2:], taps[STRIDE8_TAP[name]].shape[-2:]
    assert tuple(s4) == (18, 25) and tuple(s8) == (9, 13)  # ceil(70/4), ceil(100/4), ...
    assert r_low.shape == (2, CHANNELS[name][0], *s4)
    assert r_high.shape == (2, CHANNELS[name][1], *s8)


def test_every_parameter_gets_a_gradient(random_backbone: tuple[str, Backbone]) -> None:
    _, bb = random_backbone
    bb.zero_grad(set_to_none=True)
    r_low, r_high = bb(torch.rand(1, 3, 64, 96))
    (r_low.sum() + r_high.sum()).backward()
    no_grad = [n for n, p in bb.named_parameters() if p.grad is None]
    assert not no_grad, no_grad[:5]
    bb.zero_grad(set_to_none=True)


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(RefcolorError):
        build_backbone("vgg19", pretrained=False)


# --------------------------------------------------------------------------- real photos


def _photo(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """skimage photo -> 1,3,224,224: shorter side 224, centre crop, normalised."""
    from skimage import data

    img = getattr(data, name)()
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    s = 224 / min(h, w)
    x = F.interpolate(x, size=(max(224, round(h * s)), max(224, round(w * s))),
                      mode="bilinear", align_corners=False, antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lite_clf() -> torch.nn.Module:
    return lite0_classifier(pretrained=True)


def test_lite0_mapping_is_complete() -> None:
    net = lite0_classifier(pretrained=False)
    missing, unexpected = load_lite0_weights(net)
    assert missing == [] and unexpected == []
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)


def test_lite0_classifies_real_photos(lite_clf: torch.nn.Module) -> None:
    with torch.inference_mode():
        cat = lite_clf(_photo("chelsea", LITE0_MEAN, LITE0_STD)).topk(5).indices[0].tolist()
        cup = lite_clf(_photo("coffee", LITE0_MEAN, LITE0_STD)).topk(5).indices[0].tolist()
    assert any(281 <= c <= 285 for c in cat), cat  # tabby / tiger cat / Persian / Siamese / Egyptian
    assert {967, 968} & set(cup[:2]), cup  # espresso / cup


def test_lite0_pretrained_backbone_shares_classifier_weights(lite_clf: torch.nn.Module) -> None:
    bb = build_backbone("efficientnet_lite0", pretrained=True)
    ref = lite_clf.state_dict()
    own = bb.state_dict()
    assert own and all(k in ref for k in own)
    assert all(torch.equal(v, ref[k]) for k, v in own.items())
    # the backbone applies the normalisation itself: its b4 tap equals the classifier's
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        b4 = bb.taps(x)["b4"]
        z = lite_clf.bn1(lite_clf.conv_stem((x - torch.tensor(LITE0_MEAN).view(1, 3, 1, 1))
                                            / torch.tensor(LITE0_STD).view(1, 3, 1, 1)))
        for stage in list(lite_clf.blocks)[:5]:
            z = stage(z)
    torch.testing.assert_close(b4, z)


# --------------------------------------------------------------------------- ResNet-101 file


def test_resnet101_missing_file_is_one_line_error(tmp_path: Path) -> None:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        assert resnet101_weights_path().parent == tmp_path / "checkpoints"
        with pytest.raises(RefcolorError) as err:
            build_backbone("resnet101", pretrained=True)
    finally:
        torch.hub.set_dir(old)
    msg = str(err.value)
    assert "\n" not in msg
    assert "resnet101-63fe2227.pth" in msg and str(tmp_path / "checkpoints") in msg


def test_resnet101_loads_a_torchvision_file_offline(tmp_path: Path) -> None:
    """A full torchvision state dict under the V2 name loads; the head/layer4 keys are dropped."""
    from torchvision.models import resnet101

    torch.manual_seed(1)
    full = resnet101(weights=None).state_dict()
    (tmp_path / "checkpoints").mkdir()
    target = tmp_path / "checkpoints" / "resnet101-cd907fc2.pth"
    torch.save(full, target)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        assert resnet101_weights_path() == target
        bb = build_backbone("resnet101", pretrained=True)
        assert all(torch.equal(v, full[k]) for k, v in bb.state_dict().items())
        assert not any(k.startswith(("layer4.", "fc.", "layer3.19.")) for k in bb.state_dict())
        target.write_bytes(b"not a checkpoint")
        with pytest.raises(RefcolorError) as err:
            build_backbone("resnet101", pretrained=True)
        assert "\n" not in str(err.value)
    finally:
        torch.hub.set_dir(old)


def test_resnet101_real_weights_classify_chelsea() -> None:
    path = resnet101_weights_path()
    if not path.is_file():
        pytest.skip(f"no torchvision ResNet-101 weights at {path}")
    from torchvision.models import resnet101

    bb = build_backbone("resnet101", pretrained=True)  # loads without missing keys
    net = resnet101(weights=None)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in bb.state_dict().items())
    with torch.inference_mode():
        top5 = net.eval()(_photo("chelsea", IMAGENET_MEAN, IMAGENET_STD)).topk(5).indices[0].tolist()
    assert any(281 <= c <= 285 for c in top5), top5
