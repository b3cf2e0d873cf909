"""Evaluation-time component switches (``Ablation``) on a random-init lite model, tiny input."""
import pytest
import torch
import torch.nn.functional as F

from refcolor.config import get_config
from refcolor.errors import RefcolorError
from refcolor.models.correspondence import nonlocal_warp
from refcolor.models.network import Ablation, build_model

H, W = 32, 48


def make(**flags):
    torch.manual_seed(0)
    return build_model(get_config("lite", pretrained=False, **{"double_head": True, "num_ct_blocks": 3, **flags})).eval()  # the paper's full set


def inputs(n_frames: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    l = torch.rand(1, n_frames, 1, H, W, generator=g) * 2 - 1
    ref = torch.cat([torch.rand(1, 1, H, W, generator=g) * 2 - 1, torch.rand(1, 2, H, W, generator=g) - 0.5], 1)
    return l, ref


def composed(net, l_block, ref, memory, copy_head1=False):
    """Eq. 1-5 composed from the model's parts as ``run_block`` did before the switches existed
    (``copy_head1``: W1,S1 also in W2,S2's input slots)."""
    b, n, _, h, w = l_block.shape
    l = l_block.reshape(b * n, 1, h, w)
    heads, ho, grid, sizes = net._features(l, memory, n)
    hc, wc = h // net.cfg.color_scale, w // net.cfg.color_scale
    guidance = []
    for q, k, v, (gh, gw) in zip(heads, ref.keys, ref.ab, sizes):
        wk, sk = nonlocal_warp(q.view(b, n, *q.shape[1:]), k, v, net.correspondence.temperature())
        cat = torch.cat([wk.view(b, n, 2, gh, gw), sk.view(b, n, 1, gh, gw)], 2).flatten(0, 1)
        guidance.append(F.interpolate(cat, size=(hc, wc), mode="bilinear", align_corners=False))
    if copy_head1:
        guidance[1] = guidance[0]
    lab_ref = F.interpolate(ref.lab, size=(hc, wc), mode="area").expand(b * n, 3, hc, wc)
    ab = net.colorization(torch.cat([*guidance, F.avg_pool2d(l, net.cfg.color_scale), lab_ref], 1), ho, grid)
    return F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False).view(b, n, 2, h, w)


@torch.inference_mode()
def blocks(net, l, ref_lab, n=2):
    """Outputs of consecutive blocks of ``n`` frames, memory carried as inference carries it."""
    ref = net.encode_reference(ref_lab)
    memory, outs = net.init_memory(), []
    for s in range(0, l.shape[1], n):
        out = net.run_block(l[:, s:s + n], ref, memory)
        outs.append(out)
        memory = out.memory
    return ref, outs


def test_default_is_the_full_model_bit_for_bit():
    net = make()
    assert net.ablation == Ablation()
    l, ref_lab = inputs()
    ref, outs = blocks(net, l, ref_lab)
    with torch.inference_mode():
        first = composed(net, l[:, :2], ref, None)
        second = composed(net, l[:, 2:], ref, outs[0].memory)
    assert torch.equal(outs[0].ab, first) and torch.equal(outs[1].ab, second)


def test_subnet_bypass_is_w1_upsampled():
    net = make()
    l, ref_lab = inputs()
    _, full = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(no_subnet=True))
    _, outs = blocks(net, l, ref_lab)
    cs = net.cfg.color_scale
    assert cs == 2  # lite: the subnet runs at half size, and W1 takes the same two up-samplings
    for out, f in zip(outs, full):
        w1 = F.interpolate(out.warped[0].flatten(0, 1), size=(H // cs, W // cs), mode="bilinear", align_corners=False)
        w1 = F.interpolate(w1, size=(H, W), mode="bilinear", align_corners=False)
        assert torch.equal(out.ab, w1.view_as(out.ab))
        assert torch.equal(out.warped[0], f.warped[0])  # the matching is untouched
        assert not torch.equal(out.ab, f.ab)


def test_memory_reset_runs_every_block_with_an_empty_memory():
    net = make()
    l, ref_lab = inputs(6)
    _, full = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(reset_memory=True))
    ref, outs = blocks(net, l, ref_lab)
    net.set_ablation(Ablation())
    with torch.inference_mode():
        for i in (1, 2):
            alone = net.run_block(l[:, 2 * i:2 * i + 2], ref, None)
            assert torch.equal(outs[i].ab, alone.ab)
            assert not torch.equal(outs[i].ab, full[i].ab)  # the carried memory did change block i
    assert torch.equal(outs[0].ab, full[0].ab)  # the first block has an empty memory anyway


def test_head2_off_feeds_head1_in_its_place():
    net = make()
    l, ref_lab = inputs()
    _, full = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(no_head2=True))
    ref, outs = blocks(net, l, ref_lab)
    assert len(outs[0].warped) == 1 and len(full[0].warped) == 2
    with torch.inference_mode():
        expected = composed(net, l[:, 2:], ref, outs[0].memory, copy_head1=True)
    assert torch.equal(outs[1].ab, expected)
    assert not torch.equal(outs[1].ab, full[1].ab)


def test_transformer_bypass_skips_the_correspondence_blocks():
    net = make()
    l, ref_lab = inputs()
    _, full = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(no_transformer=True))
    _, outs = blocks(net, l, ref_lab)
    twin = make()  # the same weights, its blocks replaced by their identity path by hand
    twin.correspondence.augment = lambda high, hi, grid: (high, hi)
    _, expected = blocks(twin, l, ref_lab)
    for out, e, f in zip(outs, expected, full):
        assert torch.equal(out.ab, e.ab) and torch.equal(out.memory, e.memory)
        assert not torch.equal(out.ab, f.ab)


def test_switches_are_not_weights_and_refuse_missing_parts():
    net = make()
    keys = list(net.state_dict())
    net.set_ablation(Ablation(no_subnet=True, reset_memory=True, no_head2=True, no_transformer=True))
    assert list(net.state_dict()) == keys
    with pytest.raises(RefcolorError, match="no linkage memory"):
        make(use_linkage=False).set_ablation(Ablation(reset_memory=True))
    with pytest.raises(RefcolorError, match="one head"):
        make(double_head=False).set_ablation(Ablation(no_head2=True))
    with pytest.raises(RefcolorError, match="no correspondence CNN-Transformer blocks"):
        make(use_transformer=False, use_linkage=False).set_ablation(Ablation(no_transformer=True))
    with pytest.raises(RefcolorError, match="num_ct_blocks=0"):  # the lite preset since session 13
        make(num_ct_blocks=0).set_ablation(Ablation(no_transformer=True))


def test_reset_linkage_empties_the_tokens_and_keeps_propagation():
    """reset_linkage: every block reads no linkage tokens but head 1 still reads what the previous
    block lends; so it differs from the full model and from reset_memory (which drops both)."""
    l, ref_lab = inputs(n_frames=6)
    net = make(propagate_bias=0.05)
    _, full = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(reset_linkage=True))
    _, linkage = blocks(net, l, ref_lab)
    net.set_ablation(Ablation(reset_memory=True))
    _, memory = blocks(net, l, ref_lab)
    assert torch.equal(full[0].ab, linkage[0].ab)  # the first block has no memory either way
    assert all("tokens" not in o.memory or o.memory["tokens"] is not None for o in linkage)
    for k in (1, 2):
        assert not torch.equal(full[k].ab, linkage[k].ab)  # the linkage read is gone
        assert not torch.equal(memory[k].ab, linkage[k].ab)  # propagation is still there
    # a block under reset_linkage equals the full model's block given the lent part only
    net.set_ablation(Ablation())
    ref = net.encode_reference(ref_lab)
    lent_only = {k: v for k, v in linkage[0].memory.items() if k != "tokens"}
    with torch.inference_mode():
        again = net.run_block(l[:, 2:4], ref, lent_only)
    assert torch.equal(again.ab, linkage[1].ab)


def test_reset_linkage_is_refused_without_propagation():
    with pytest.raises(RefcolorError, match="reset_linkage"):
        make().set_ablation(Ablation(reset_linkage=True))
