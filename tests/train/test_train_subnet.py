"""Stage 3 (train/subnet.py): traces replay the network exactly; the loss reaches only the subnet."""
import numpy as np
import pytest
import torch

from refcolor.color import AB_SCALE
from refcolor.config import get_config
from refcolor.models.network import build_model
from refcolor.train.subnet import SubnetConfig, blocks_of, block_loss, score_trace, soft_colorfulness, subnet_ab, trace_sequence
from refcolor.eval.metrics import colorfulness


def _net(**overrides):
    torch.manual_seed(0)
    net = build_model(get_config("lite", pretrained=False, **overrides)).eval()
    with torch.no_grad():  # a subnet whose output differs from W1, so a replay error would show
        net.colorization.to_ab.weight.normal_(std=0.05)
    return net


def _frames(t=5, h=32, w=48):
    rng = np.random.default_rng(0)
    base = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(t)])


def test_trace_replays_the_network_output():
    """The subnet run on a trace gives the colorizer's own frames (fp16 cache aside), in every block,
    also when the memory carries propagation (blocks after the first read the previous one)."""
    net = _net(propagate_bias=0.05)
    rgb = _frames()
    trace = trace_sequence(net, rgb, block=2, dtype=torch.float32)
    assert len(trace["x"]) == len(rgb) == len(trace["ho"]) == len(trace["out"])
    assert blocks_of(trace, 2) == [(0, 2), (2, 4), (4, 5)]
    scores = score_trace(net, trace, 2, rgb.shape[1:3])
    with torch.no_grad():
        for first, last in blocks_of(trace, 2):
            ab = subnet_ab(net, trace["x"][first:last], trace["ho"][first:last], rgb.shape[1:3]) * AB_SCALE
            from refcolor.convert import luminance, to_rgb_uint8

            replay = to_rgb_uint8(luminance(trace["gray"][first:last].numpy(), torch.device("cpu")), ab)
            diff = np.abs(replay.astype(int) - trace["out"][first:last].numpy().astype(int))
            assert diff.max() <= 1 and diff.mean() < 1e-3
    assert len(scores) == len(rgb) and all(np.isfinite(s).all() for s in scores)


def test_loss_reaches_only_the_subnet_and_every_part_of_it():
    net = _net()
    trace = trace_sequence(net, _frames(t=3), block=3)
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("colorization."))
    cfg = SubnetConfig(init_from="", height=32, width=48, w_color=0.5, w_chroma=0.5)
    terms = block_loss(net, trace, 0, 3, cfg)
    assert set(terms) == {"l1", "color", "chroma", "loss"}
    terms["loss"].backward()
    for name, p in net.named_parameters():
        if name.startswith("colorization."):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_soft_colorfulness_is_the_metric():
    rgb = _frames(t=2)
    soft = soft_colorfulness(torch.from_numpy(rgb).permute(0, 3, 1, 2).double() / 255.0)
    assert torch.allclose(soft, torch.tensor([colorfulness(f) for f in rgb], dtype=soft.dtype), rtol=1e-4)


def test_selection_rules():
    from refcolor.errors import RefcolorError
    from refcolor.train.subnet import selection_rank

    start = {"psnr": 32.0, "color_share": 0.87}
    vals = [start, {"psnr": 32.28, "color_share": 0.90}, {"psnr": 32.11, "color_share": 0.954},
            {"psnr": 31.80, "color_share": 0.995}]
    best = lambda select, floor=0.0: max(vals, key=lambda v: selection_rank(v, start, select, floor))  # noqa: E731
    assert best("psnr") is vals[1]
    assert best("psnr", floor=0.95) is vals[2]  # the highest PSNR at the color floor
    assert best("psnr", floor=1.0) is vals[3]  # none reaches it: the most colorful
    assert best("color") is vals[2]  # most colorful without losing PSNR; 31.80 < 32.0 is not chosen
    with pytest.raises(RefcolorError):
        selection_rank(start, start, "loss")


def test_adversarial_term_reaches_the_subnet_and_the_discriminator_learns():
    """With w_adv, the generator term moves every subnet parameter but not the discriminator, and
    the discriminator step (on real vs detached fake) changes the discriminator only."""
    from refcolor.train.discriminator import PatchDiscriminator
    from refcolor.train.subnet import SubnetTrainer

    net = _net()
    trace = trace_sequence(net, _frames(t=3, h=64, w=96), block=3)
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("colorization."))
    cfg = SubnetConfig(init_from="", height=64, width=96, w_adv=0.5)
    torch.manual_seed(0)
    disc = PatchDiscriminator(8)
    pairs = []
    terms = block_loss(net, trace, 0, 3, cfg, disc, pairs)
    assert set(terms) == {"l1", "adv", "loss"} and len(pairs) == 1
    assert torch.isclose(terms["loss"], terms["l1"] + 0.5 * terms["adv"])
    terms["loss"].backward()
    assert all(p.grad is None for p in disc.parameters())
    for name, p in net.named_parameters():
        if name.startswith("colorization."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    real, fake = pairs[0]
    assert torch.equal(real[:, :1], fake[:, :1]) and not fake.requires_grad  # the same l: only colors differ
    trainer = SubnetTrainer.__new__(SubnetTrainer)  # the step alone, without traces on disk
    trainer.disc, trainer.opt_d = disc, torch.optim.AdamW(disc.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in disc.parameters()]
    d_loss = trainer.discriminator_step(pairs)
    assert np.isfinite(d_loss) and d_loss > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, disc.parameters()))
