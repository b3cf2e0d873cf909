"""tools/slim_model.py: head 2 folded into the subnet's first convolution and the correspondence
CNN-Transformer blocks dropped compute exactly what the component switches compute."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from refcolor.checkpoint import load_model, save_model
from refcolor.config import get_config
from refcolor.errors import RefcolorError
from refcolor.models.network import Ablation, build_model

_spec = importlib.util.spec_from_file_location("slim_model", Path(__file__).parents[1] / "tools" / "slim_model.py")
slim_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slim_model)

H, W = 32, 48


def full_model(**flags):
    torch.manual_seed(0)
    cfg = get_config("lite", pretrained=False, memory_grid=(2, 2), double_head=True, num_ct_blocks=2,
                     propagate_bias=0.05, **flags)
    net = build_model(cfg).eval()
    with torch.no_grad():  # trained-looking weights: the subnet's output layer away from its ~0 init,
        for p in net.parameters():  # so that a wrong fold changes the output measurably
            p.add_(torch.randn_like(p) * 0.05)
    return net


@torch.inference_mode()
def run(net, seed=1, blocks=3, n=2):
    g = torch.Generator().manual_seed(seed)
    ref = torch.cat([torch.rand(1, 1, H, W, generator=g) * 2 - 1, torch.rand(1, 2, H, W, generator=g) - 0.5], 1)
    state, memory, outs = net.encode_reference(ref), net.init_memory(), []
    for _ in range(blocks):
        ab, memory = net.step(torch.rand(1, n, 1, H, W, generator=g) * 2 - 1, state, memory)
        outs.append(ab)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("keep_head2,keep_transformer", [(False, False), (True, False), (False, True)])
def test_slim_equals_the_component_switches(keep_head2, keep_transformer):
    net = full_model()
    slim = slim_model.slim(net, keep_head2, keep_transformer).eval()
    assert slim.cfg.double_head is keep_head2
    assert (slim.cfg.num_ct_blocks > 0) is keep_transformer
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in net.parameters())
    full_out = run(net)
    net.set_ablation(Ablation(no_head2=not keep_head2, no_transformer=not keep_transformer))
    switched = run(net)
    assert (full_out - switched).abs().max() > 1e-3  # the switches change this model's output
    assert torch.allclose(run(slim), switched, atol=1e-5)


def test_slim_round_trips_through_a_checkpoint(tmp_path):
    net = full_model()
    src, dst = tmp_path / "full.safetensors", tmp_path / "slim.safetensors"
    save_model(net, src)
    assert slim_model.main([str(src), "--out", str(dst)]) == 0
    loaded = load_model(dst).eval()
    assert not loaded.cfg.double_head and loaded.cfg.num_ct_blocks == 0
    net.set_ablation(Ablation(no_head2=True, no_transformer=True))
    assert torch.allclose(run(loaded), run(net), atol=1e-5)


def test_nothing_to_switch_off_is_refused(tmp_path, capsys):
    net = full_model()
    one = slim_model.slim(net)
    with pytest.raises(RefcolorError, match="nothing to switch off"):
        slim_model.slim(one)
    assert slim_model.main([str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("slim_model: ") and "\n" not in err
    assert not (tmp_path / "x.safetensors").exists()
