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
    {"double_head": True, "num_ct_blocks": 1},  # lite with the paper's parts its preset switches off
    {"propagate_bias": 0.05},  # the previous block's last frame joins head 1 (models/propagation.py)
    {"propagate_bias": 0.05, "propagate_window": 1},  # ... read in a 3x3 window on head 1's grid
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
    assert len(outs[0].warped) == (2 if net.cfg.double_head else 1)
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
    # key_mix starts with the learned part at m = 0.1 of the correlation; at m -> 0 head 1 is the warp's
    net = build_model(get_config("lite", key_mix_init=1e-6)).eval()
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
    assert out.warped[0].shape[-2:] == (16, 16) and len(out.warped) == 1  # h4 head 1; the preset has no head 2


def test_key_mix_weights_raw_and_learned_correlations():
    """key_mix: head 1's key is unit-norm and its cosine is (1 - m) raw + m learned, whatever the
    learned part's scale (the shipped weights' learned part was ~10 % of a joint norm)."""
    from refcolor.models.correspondence import center_normalize

    net = make("lite")
    cs = net.correspondence
    g = torch.Generator().manual_seed(3)
    raw, learned = torch.randn(2, 176, 5, 7, generator=g), torch.randn(2, 64, 5, 7, generator=g) * 1e-3
    key = cs.mix_keys(raw, learned)
    assert torch.allclose(key.norm(dim=1), torch.ones(2, 35), atol=1e-5)
    m = torch.sigmoid(cs.key_mix_logit).item()
    assert abs(m - 0.1) < 1e-6
    r, l_ = center_normalize(raw.flatten(2)), center_normalize(learned.flatten(2))
    want = (1 - m) * torch.einsum("bkp,bkq->bpq", r, r) + m * torch.einsum("bkp,bkq->bpq", l_, l_)
    assert torch.allclose(torch.einsum("bkp,bkq->bpq", key, key), want, atol=1e-5)


def test_learned_tau_stays_in_its_range():
    net = make("lite")
    cs = net.correspondence
    assert abs(float(cs.temperature()) - 0.01) < 1e-6
    lo, hi = net.cfg.tau_range
    for logit in (-50.0, 50.0):
        with torch.no_grad():
            cs.tau_logit.fill_(logit)
        assert lo - 1e-8 <= float(cs.temperature()) <= hi + 1e-8  # float32 ends
    with pytest.raises(RefcolorError, match="tau_range"):
        get_config("lite", tau=0.05)


def test_old_checkpoint_configs_keep_their_architecture():
    """Checkpoints written before key_mix / key_proj / learned tau carry configs without those
    keys: they must rebuild the old architecture (so their weights load strictly)."""
    import json

    old = json.loads(get_config("lite").to_json())
    for key in ("key_mix", "key_mix_init", "key_proj_hidden", "learn_tau", "tau_range"):
        old.pop(key)
    cfg = type(get_config("lite")).from_json(json.dumps(old))
    assert not cfg.key_mix and cfg.key_proj_hidden == 0 and not cfg.learn_tau
    net = build_model(cfg.replace(pretrained=False))
    assert net.correspondence.key_proj is None and not hasattr(net.correspondence, "tau_logit")


def test_chroma_gain_scales_only_the_output():
    """ModelConfig.chroma_gain multiplies the output ab and leaves the memory (and W1) as they were."""
    plain, gained = make("lite", propagate_bias=0.05).eval(), make("lite", propagate_bias=0.05, chroma_gain=1.25).eval()
    gained.load_state_dict(plain.state_dict())
    l, ref = inputs(n_frames=4, size=SIZES["lite"])
    with torch.inference_mode():
        runs = []
        for net in (plain, gained):
            state, memory, abs_ = net.encode_reference(ref), net.init_memory(), []
            for start in (0, 2):
                out = net.run_block(l[:, start:start + 2], state, memory)
                memory = out.memory
                abs_.append(out.ab)
            runs.append((torch.cat(abs_, 1), out.warped[0], memory))
    (ab1, w1, mem1), (ab2, w2, mem2) = runs
    assert ab1.abs().max() > 0
    torch.testing.assert_close(ab2, ab1 * 1.25)
    assert torch.equal(w1, w2)
    assert all(torch.equal(a, b) for a, b in zip(mem1.values(), mem2.values()))
    with pytest.raises(RefcolorError, match="chroma_gain"):
        get_config("lite", chroma_gain=3.0)
