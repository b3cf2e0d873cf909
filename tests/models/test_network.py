"""RefColorNet over every preset and ablation flag: shapes, range, gradients, memory, determinism."""
import pytest
import torch

from refcolor.config import PRESETS, get_config
from refcolor.errors import RefcolorError
from refcolor.models.network import RefColorNet, RefState, build_model

FLAGS = [
    {},
    {"use_linkage": False},
    {"use_transformer": False, "use_linkage": False},
    {"double_head": False},
]
H, W = 32, 48
# ResNet-101 and 512-channel layers are heavy on 2 CPU cores: the paper preset runs smaller.
SIZES = {"lite": (32, 48), "paper": (16, 24)}


def make(preset: str, **flags) -> RefColorNet:
    torch.manual_seed(0)
    return build_model(get_config(preset, pretrained=False, **flags))


def inputs(n_frames: int = 6, seed: int = 1, size: tuple[int, int] = (H, W)):
    h, w = size
    g = torch.Generator().manual_seed(seed)
    l = torch.rand(1, n_frames, 1, h, w, generator=g) * 2 - 1
    ref = torch.cat([torch.rand(1, 1, h, w, generator=g) * 2 - 1, torch.rand(1, 2, h, w, generator=g) - 0.5], 1)
    return l, ref


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f) or "full")
def test_forward_backward(preset, flags):
    net = make(preset, **flags).train()
    h, w = SIZES[preset]
    l, ref = inputs(size=(h, w))
    outs = net(l, ref, block_size=2)  # 3 blocks: the memory written by block 2 is read by block 3
    ab = torch.cat([o.ab for o in outs], dim=1)
    assert ab.shape == (1, 6, 2, h, w)
    assert torch.isfinite(ab).all()
    assert ab.abs().max() < 1
    assert len(outs[0].warped) == (1 if flags.get("double_head") is False else 2)
    ab.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, missing


@pytest.mark.parametrize("preset", list(PRESETS))
def test_memory_size_is_constant(preset):
    net = make(preset).eval()
    l, ref = inputs(n_frames=1, size=(16, 24))  # small: 50 steps of the paper preset in seconds
    with torch.inference_mode():
        state = net.encode_reference(ref)
        memory = net.init_memory()
        shapes = set()
        for _ in range(50):
            ab, memory = net.step(l, state, memory)
            shapes.add(tuple(memory.shape))
            assert torch.isfinite(memory).all()
    cfg = net.cfg
    assert shapes == {(1, cfg.memory_slots, cfg.token_dim)}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_eval_is_deterministic(preset):
    net = make(preset).eval()
    l, ref = inputs(size=SIZES[preset])
    with torch.inference_mode():
        a = torch.cat([o.ab for o in net(l, ref, 3)], 1)
        b = torch.cat([o.ab for o in net(l, ref, 3)], 1)
    assert torch.equal(a, b)


def test_several_references_concatenate_positions():
    net = make("lite").eval()
    l, ref = inputs(n_frames=2)
    with torch.inference_mode():
        one = net.encode_reference(ref)
        both = RefState.concat([one, net.encode_reference(ref.flip(-1))])
        ab, _ = net.step(l, both, None)
    assert all(b.shape[-1] == 2 * o.shape[-1] for b, o in zip(both.ab, one.ab))
    assert ab.shape == (1, 2, 2, H, W)


def test_size_must_be_multiple_of_8():
    net = make("lite")
    with pytest.raises(RefcolorError, match="multiples of 8"):
        net.encode_reference(torch.zeros(1, 3, 30, 48))


def test_config_errors():
    with pytest.raises(RefcolorError, match="nope"):
        get_config("lite", nope=1)
    with pytest.raises(RefcolorError, match="use_linkage"):
        get_config("paper", use_transformer=False)
    with pytest.raises(RefcolorError, match="unknown preset"):
        get_config("huge")


def test_untrained_lite_reproduces_warp():
    """raw_keys: head 1 of an untrained `lite` holds the warp's features, so W1 is the warp's
    chroma (training starts from the training-free baseline, QUALITY-NOTES) on a real photo."""
    import numpy as np
    import torch.nn.functional as F
    from skimage import data

    from refcolor.color import normalize_lab, rgb_to_lab
    from refcolor.models.warp import WarpModel

    torch.manual_seed(0)
    net = build_model(get_config("lite")).eval()
    warp = WarpModel(net.backbone).eval()
    rgb = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None].float() / 255
    lab = normalize_lab(rgb_to_lab(F.interpolate(rgb, size=(64, 64), mode="area")))
    target = lab.flip(-1)[:, None]  # a mirrored frame: the warp must move colors
    with torch.no_grad():
        out = net.run_block(target[:, :, :1], net.encode_reference(lab), None)
        ab_warp, _ = warp.step(target[:, :, :1], warp.encode_reference(lab), None)
    w1 = F.interpolate(out.warped[0][0], size=(64, 64), mode="bilinear", align_corners=False)
    assert (w1 - ab_warp[0]).abs().max() < 2e-3
    assert (out.ab - ab_warp).abs().mean() < 0.01  # the colorization residual starts near zero
    assert out.warped[0].shape[-2:] == (16, 16) and out.warped[1].shape[-2:] == (8, 8)  # h4 and h8 heads
