"""The inference path of ``nonlocal_warp``: small row chunks, exact to float rounding, never the
whole logit matrix; the autograd (training) path unchanged."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from refcolor.models.correspondence import _warp_fp32, center_normalize, nonlocal_warp


def inputs(b=2, n=2, k=24, p=20 * 30, pr=18 * 24, seed=0):
    g = torch.Generator().manual_seed(seed)
    key = center_normalize(torch.randn(b, k, pr, generator=g))
    # queries near reference positions (a peaked softmax at tau = 0.01, as on real features)
    near = key[:, :, torch.randint(0, pr, (p,), generator=g)] + 0.3 * torch.randn(b, k, p, generator=g)
    query = torch.stack([center_normalize(near + 0.1 * i * torch.randn(b, k, p, generator=g)) for i in range(n)], dim=1)
    return query, key, torch.rand(b, 2, pr, generator=g) * 2 - 1


def full_matrix(query, key, value, tau):
    """Eq. 1-3 written out with the whole P x Pr matrix, in float64."""
    corr = torch.einsum("bnkp,bkr->bnpr", query.double(), key.double())
    attn = torch.softmax(corr / float(tau), dim=-1)
    return torch.einsum("bnpr,bcr->bncp", attn, value.double()), corr.amax(-1)[:, :, None]


class LargestResult(TorchDispatchMode):
    """Records the largest tensor any aten operator returns."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("tau", [0.01, 0.05, torch.tensor(0.02)])
@pytest.mark.parametrize("block", [1 << 19, 7 * 18 * 24, 1])
def test_inference_chunks_equal_the_whole_matrix(tau, block):
    query, key, value = inputs()
    want_w, want_s = full_matrix(query, key, value, tau)
    with torch.inference_mode():
        w, s = nonlocal_warp(query, key, value, tau, block=block)
    assert w.shape == want_w.shape and s.shape == want_s.shape
    # fp32 against float64: the logits are the correlation x 1/tau, so its rounding grows 100x at
    # tau = 0.01 (the autograd path is 6.5e-6 away from float64 here too)
    assert torch.allclose(w.double(), want_w, atol=2e-5) and torch.allclose(s.double(), want_s, atol=1e-6)


def test_inference_never_builds_more_than_a_block_of_logits():
    query, key, value = inputs(b=1, n=3)
    rows = 16
    with torch.inference_mode(), LargestResult() as seen:
        nonlocal_warp(query, key, value, 0.01, chunk=rows)  # (HEAD before this test ignored chunk)
    # one chunk's correlation (16 of 600 rows) or the input itself (3 frames), never P x Pr
    p, pr = query.shape[-1], key.shape[-1]
    assert seen.numel <= max(rows * pr, query.numel()) < p * pr


def test_no_grad_and_autograd_paths_agree():
    query, key, value = inputs()
    with torch.no_grad():
        w, s = nonlocal_warp(query, key, value, 0.01)
    q = query.clone().requires_grad_()
    w_train, s_train = nonlocal_warp(q, key, value, 0.01)
    assert w_train.requires_grad
    assert torch.allclose(w, w_train.detach(), atol=2e-6) and torch.allclose(s, s_train.detach(), atol=1e-6)


def test_training_path_is_the_autograd_code_as_it_was():
    query, key, value = inputs()
    tau = torch.tensor(0.02, requires_grad=True)  # a learned temperature, as in training
    w, s = nonlocal_warp(query, key, value, tau, chunk=100)
    want_w, want_s = _warp_fp32(query, key, value, tau, chunk=100)
    assert torch.equal(w, want_w) and torch.equal(s, want_s)
    w.square().sum().backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)
