"""Propagation in a window (``window_partial`` merged by ``nonlocal_warp``): equal to one softmax over
the reference and the lent positions within r cells, on both the inference and the autograd path;
equal to the non-local read when the window covers the grid; faster is benchmarks' business."""
import pytest
import torch

from refcolor.config import get_config
from refcolor.errors import RefcolorError
from refcolor.models.correspondence import center_normalize, nonlocal_warp
from refcolor.models.network import build_model
from refcolor.models.propagation import Propagated, join, window_partial


def _case(gh, gw, seed, b=2, n=3, k=6, pr=17):
    g = torch.Generator().manual_seed(seed)
    p = gh * gw
    query = center_normalize(torch.randn(b * n, k, p, generator=g)).view(b, n, k, p)
    key, value = center_normalize(torch.randn(b, k, pr, generator=g)), torch.randn(b, 2, pr, generator=g)
    lent = Propagated(keys=center_normalize(torch.randn(b, k, p, generator=g)), ab=torch.randn(b, 2, p, generator=g))
    return query, key, value, lent


def _dense(query, key, value, lent, grid, radius, bias, tau):
    """The definition: one softmax over all reference positions and the lent positions whose row
    and column both lie within ``radius`` of the query's."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    near = ((ys[:, None] - ys[None]).abs() <= radius) & ((xs[:, None] - xs[None]).abs() <= radius)
    mem = (torch.einsum("bnkp,bkr->bnpr", query, lent.keys) - bias).masked_fill(~near, -1e4)
    corr = torch.cat([torch.einsum("bnkp,bkr->bnpr", query, key), mem], dim=-1)
    warped = torch.einsum("bnpr,bcr->bncp", torch.softmax(corr / tau, dim=-1), torch.cat([value, lent.ab], -1))
    return warped, corr.amax(dim=-1)[:, :, None]


@pytest.mark.parametrize("gh,gw,radius", [(5, 7, 1), (11, 13, 2), (9, 20, 4), (16, 8, 3)])
def test_window_equals_one_masked_softmax(gh, gw, radius):
    query, key, value, lent = _case(gh, gw, seed=radius)
    want_w, want_s = _dense(query, key, value, lent, (gh, gw), radius, 0.1, 0.05)
    part = window_partial(query, lent, (gh, gw), radius, 0.1, 0.05)
    # inference path, in row chunks that do not align with the grid's rows
    got_w, got_s = nonlocal_warp(query, key, value, 0.05, chunk=4, block=40, extra=part)
    assert torch.allclose(got_w, want_w, atol=1e-5) and torch.allclose(got_s, want_s, atol=1e-6)
    # autograd path: the same values, and the gradient reaches the query through both parts
    q = query.clone().requires_grad_()
    tau = torch.tensor(0.05, requires_grad=True)
    got_w, got_s = nonlocal_warp(q, key, value, tau, chunk=5, extra=window_partial(q, lent, (gh, gw), radius, 0.1, tau))
    assert torch.allclose(got_w, want_w, atol=1e-5) and torch.allclose(got_s, want_s, atol=1e-6)
    (got_w.square().sum() + got_s.sum()).backward()
    q_ref = query.clone().requires_grad_()
    tau_ref = torch.tensor(0.05, requires_grad=True)
    want_w, want_s = _dense(q_ref, key, value, lent, (gh, gw), radius, 0.1, tau_ref)
    (want_w.square().sum() + want_s.sum()).backward()
    assert torch.allclose(q.grad, q_ref.grad, atol=1e-4) and torch.allclose(tau.grad, tau_ref.grad, rtol=1e-4, atol=1e-3)


def test_a_window_over_the_whole_grid_is_the_nonlocal_read():
    query, key, value, lent = _case(6, 9, seed=5)
    joined = nonlocal_warp(*join(query, key, value, lent, 0.2), 0.03)
    windowed = nonlocal_warp(query, key, value, 0.03, extra=window_partial(query, lent, (6, 9), 9, 0.2, 0.03))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(joined, windowed))


def test_a_window_reads_nothing_from_outside_it():
    query, key, value, lent = _case(10, 10, seed=7, b=1, n=1)
    far = Propagated(keys=lent.keys.clone(), ab=lent.ab.clone())
    far.ab.view(1, 2, 10, 10)[..., 6:, 6:] += 5.0  # only positions more than 2 cells from the corner move
    a = nonlocal_warp(query, key, value, 0.05, extra=window_partial(query, lent, (10, 10), 2, 0.0, 0.05))[0]
    b = nonlocal_warp(query, key, value, 0.05, extra=window_partial(query, far, (10, 10), 2, 0.0, 0.05))[0]
    corner = a.view(1, 1, 2, 10, 10)[..., :4, :4], b.view(1, 1, 2, 10, 10)[..., :4, :4]
    assert torch.equal(*corner) and not torch.equal(a, b)


def test_network_window_equals_nonlocal_propagation_when_it_covers_the_grid():
    torch.manual_seed(0)
    cfg = get_config("lite", pretrained=False, propagate_bias=0.05)
    full, windowed = build_model(cfg).eval(), build_model(cfg.replace(propagate_window=32)).eval()
    windowed.load_state_dict(full.state_dict())
    l = torch.rand(1, 2, 1, 32, 48) * 2 - 1
    ref = full.encode_reference(torch.rand(1, 3, 32, 48) * 2 - 1)
    with torch.no_grad():
        a1, m1 = full.step(l, ref, None)
        b1, n1 = windowed.step(l, ref, None)
        assert torch.equal(a1, b1)  # no memory yet: the window changes nothing
        assert torch.allclose(full.step(l, ref, m1)[0], windowed.step(l, ref, n1)[0], atol=1e-4)
        narrow = build_model(cfg.replace(propagate_window=1)).eval()
        narrow.load_state_dict(full.state_dict())
        assert not torch.allclose(full.step(l, ref, m1)[0], narrow.step(l, ref, n1)[0], atol=1e-4)


@pytest.mark.parametrize("bad", [-1, 33, 1.5])
def test_window_out_of_range_is_refused(bad):
    with pytest.raises(RefcolorError, match="propagate_window"):
        get_config("lite", pretrained=False, propagate_window=bad)


def test_window_with_a_sparse_memory_is_refused():
    with pytest.raises(RefcolorError, match="propagate_window needs propagate_stride 1"):
        get_config("lite", pretrained=False, propagate_window=2, propagate_stride=2)
