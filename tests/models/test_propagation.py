"""Propagation (models/propagation.py): an exact margin, no effect when the memory cannot win,
a memory of plain tensors carried block to block by both model kinds, and saved by resume."""
import torch

from refcolor.config import get_config
from refcolor.models.correspondence import center_normalize, nonlocal_warp
from refcolor.models.network import build_model
from refcolor.models.propagation import Propagated, join
from refcolor.models.warp import WarpConfig, WarpModel


def _keys(b, k, p, seed):
    g = torch.Generator().manual_seed(seed)
    return center_normalize(torch.randn(b, k, p, generator=g))


def test_margin_lowers_only_memory_logits():
    q, ref, mem = _keys(1, 8, 12, 0)[:, None], _keys(1, 8, 10, 1), _keys(1, 8, 12, 2)
    value, mem_ab = torch.rand(1, 2, 10), torch.rand(1, 2, 12)
    q2, k2, v2 = join(q, ref, value, Propagated(keys=mem, ab=mem_ab), bias=0.3)
    logits = torch.einsum("bnkp,bkr->bnpr", q2, k2)
    plain = torch.einsum("bnkp,bkr->bnpr", q, torch.cat([ref, mem], -1))
    assert torch.allclose(logits[..., :10], plain[..., :10], atol=1e-6)
    assert torch.allclose(logits[..., 10:], plain[..., 10:] - 0.3, atol=1e-6)
    assert torch.equal(v2, torch.cat([value, mem_ab], -1))
    assert join(q, ref, value, None, 0.3) == (q, ref, value)


def test_memory_that_cannot_win_changes_nothing():
    q, ref, mem = _keys(1, 8, 12, 0)[:, None], _keys(1, 8, 10, 1), _keys(1, 8, 12, 2)
    value = torch.rand(1, 2, 10)
    alone, _ = nonlocal_warp(q, ref, value, 0.01)
    joined, _ = nonlocal_warp(*join(q, ref, value, Propagated(keys=mem, ab=torch.rand(1, 2, 12)), bias=5.0), 0.01)
    assert torch.allclose(alone, joined, atol=1e-6)
    near, _ = nonlocal_warp(*join(q, ref, value, Propagated(keys=mem, ab=torch.rand(1, 2, 12)), bias=0.0), 0.01)
    assert not torch.allclose(alone, near, atol=1e-3)  # a free memory does win somewhere


class _TinyBackbone(torch.nn.Module):
    """Stand-in for Lite0's matching taps: 6 channels at h/4."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 4, stride=4)

    def taps(self, rgb):
        return rgb

    def match_features(self, taps):
        return self.conv(taps)


def test_warp_model_carries_the_last_frame():
    torch.manual_seed(0)
    backbone = _TinyBackbone()
    plain, prop = WarpModel(backbone), WarpModel(backbone, WarpConfig(propagate_bias=0.0))
    lab_ref = torch.rand(1, 3, 16, 24) * 2 - 1
    l = torch.rand(1, 3, 1, 16, 24) * 2 - 1
    ref = plain.encode_reference(lab_ref)
    ab0, mem0 = plain.step(l, ref, None)
    ab1, mem1 = prop.step(l, ref, None)
    assert mem0 is None and torch.equal(ab0, ab1)  # the first block: nothing to lend yet
    assert set(mem1) == {"keys", "ab"} and mem1["keys"].shape == (1, 6, 24) and mem1["ab"].shape == (1, 2, 24)
    ab2, mem2 = prop.step(l, ref, mem1)
    assert not torch.allclose(ab2, ab1)  # the second block reads the first


def test_network_memory_holds_tokens_and_what_it_lends():
    net = build_model(get_config("lite", pretrained=False, propagate_bias=0.05)).eval()
    l = torch.rand(1, 2, 1, 32, 48) * 2 - 1
    ref = net.encode_reference(torch.rand(1, 3, 32, 48) * 2 - 1)
    with torch.no_grad():
        ab1, mem = net.step(l, ref, None)
        assert set(mem) == {"tokens", "keys", "ab"}
        assert mem["keys"].shape[0] == 1 and mem["ab"].shape[:2] == (1, 2) and mem["keys"].shape[-1] == mem["ab"].shape[-1]
        ab2, mem2 = net.step(l, ref, mem)
    assert not torch.allclose(ab1, ab2)
    assert {k: v.shape for k, v in mem.items()} == {k: v.shape for k, v in mem2.items()}  # constant size


def test_stride_lends_every_sth_position_of_the_grid():
    from refcolor.models.propagation import lend

    keys, warped = torch.randn(1, 2, 4, 6 * 8), torch.randn(1, 2, 2, 6, 8)
    full, sparse = lend(keys, warped), lend(keys, warped, stride=2)
    assert torch.equal(full.keys, keys[:, -1]) and torch.equal(full.ab, warped[:, -1].flatten(2))
    assert torch.equal(sparse.keys, keys[:, -1].view(1, 4, 6, 8)[..., ::2, ::2].flatten(2))
    assert torch.equal(sparse.ab, warped[:, -1, :, ::2, ::2].flatten(2))


def test_network_with_a_sparse_memory_differs_only_from_the_second_block():
    torch.manual_seed(0)
    dense = build_model(get_config("lite", pretrained=False, propagate_bias=0.0)).eval()
    sparse = build_model(get_config("lite", pretrained=False, propagate_bias=0.0, propagate_stride=2)).eval()
    sparse.load_state_dict(dense.state_dict())
    l = torch.rand(1, 2, 1, 32, 48) * 2 - 1
    ref = dense.encode_reference(torch.rand(1, 3, 32, 48) * 2 - 1)
    with torch.no_grad():
        (a1, m1), (b1, n1) = dense.step(l, ref, None), sparse.step(l, ref, None)
        assert torch.equal(a1, b1) and n1["keys"].shape[-1] * 4 == m1["keys"].shape[-1]
        a2, b2 = dense.step(l, ref, m1)[0], sparse.step(l, ref, n1)[0]
    assert torch.isfinite(b2).all() and not torch.allclose(a2, b2)


def test_stride_out_of_range_is_refused():
    import pytest

    from refcolor.errors import RefcolorError

    for bad in (0, 5, 1.5):
        with pytest.raises(RefcolorError, match="propagate_stride"):
            get_config("lite", pretrained=False, propagate_stride=bad)
