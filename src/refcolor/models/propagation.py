"""Propagation: the previous block's last frame joins the reference in head 1's non-local warp.

An addition to the paper (QUALITY-NOTES, point 4): the linkage memory carries Transformer tokens
between blocks, but far from the reference the best match of a frame is often in the frame just
before it, whose colors the model has already decided. Here the last frame of the previous block
lends its head-1 keys and its own output chroma as extra reference positions, with their logits
lowered by a margin ``bias`` (in cosine units): a memory position wins only where it matches
``bias`` better than anything in the reference, so the reference keeps the colors wherever it
holds them (no drift), and the memory fills what it lacks and steadies the rest (less flicker).
``bias`` = 0 is naive propagation, which drifts and fades (QUALITY-NOTES: -0.25 dB, -7 % color).

The margin is exact and needs no change to ``nonlocal_warp``: the query gets a constant channel
1, reference keys a 0 and memory keys ``-bias``, so q'.k' = q.k - bias on memory positions only.

With a window (``ModelConfig.propagate_window`` = r > 0) a position reads only the lent positions
within r cells of itself (``window_partial``): the lent frame is one to N frames away, so its match
is near, and the P x P correlation of the non-local read shrinks to P x (2r+1)^2 (computed on tiles
with a halo, about 4x that). The window's part of the softmax is handed to ``nonlocal_warp`` as a
``Partial`` and merged with the reference's part there, so both still share one softmax (Eq. 2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_MASKED = -1e4  # a logit (already divided by tau) that no real one comes near: |cosine| / tau <= 200
TILE = 8  # queries per tile side: at 216x384 (lite, r = 2-8) tiles of 4, 8 and 16 ran within 8 %, 8 fastest


@dataclass
class Propagated:
    """What the previous block lends: head 1's keys and output chroma of its last frame."""

    keys: Tensor  # B,K,P (centred, normalised, on head 1's grid)
    ab: Tensor  # B,2,P normalised chroma on the same grid


def join(query: Tensor, key: Tensor, value: Tensor, memory: Propagated | None, bias: float) -> tuple[Tensor, Tensor, Tensor]:
    """query B,N,K,P; key B,K,Pr; value B,2,Pr -> the same with the memory's positions appended
    (Pr + P) and the margin channel (K + 1). Without memory, the inputs unchanged."""
    if memory is None:
        return query, key, value
    b, n, _, p = query.shape
    ones = query.new_ones(b, n, 1, p)
    ref_key = torch.cat([key, key.new_zeros(key.shape[0], 1, key.shape[-1])], dim=1)
    mem_key = torch.cat([memory.keys.to(key.dtype), key.new_full((memory.keys.shape[0], 1, memory.keys.shape[-1]), -bias)], dim=1)
    return (torch.cat([query, ones], dim=2), torch.cat([ref_key, mem_key], dim=-1),
            torch.cat([value, memory.ab.to(value.dtype)], dim=-1))


def lend(keys: Tensor, warped: Tensor, stride: int = 1) -> Propagated:
    """keys B,N,K,P of a block on head 1's grid and its warp W1 there, B,N,2,gh,gw (both model
    kinds lend W1, already on the grid) -> the last frame's keys and chroma, on every ``stride``-th
    row and column of the grid (a sparser memory: the correlation grows by P / stride^2)."""
    last_keys, last_ab = keys[:, -1], warped[:, -1]
    if stride > 1:
        gh, gw = last_ab.shape[-2:]
        last_keys = last_keys.unflatten(-1, (gh, gw))[..., ::stride, ::stride].flatten(-2).contiguous()
        last_ab = last_ab[..., ::stride, ::stride]
    return Propagated(keys=last_keys, ab=last_ab.flatten(2))


@dataclass
class Partial:
    """One part of a softmax split over two sets of positions (as flash attention merges them):
    per query its largest logit, the sum of exp(logit - peak), that sum weighted by the values,
    and the largest similarity (cosine minus margin), which Eq. 3 takes over both parts."""

    peak: Tensor  # B,N,P
    total: Tensor  # B,N,P
    weighted: Tensor  # B,N,C,P
    similarity: Tensor  # B,N,P


def window_partial(query: Tensor, memory: Propagated, grid: tuple[int, int], radius: int, bias: float,
                   tau: float | Tensor) -> Partial:
    """query B,N,K,P (head 1, centred and normalised); the lent keys B,K,P and chroma B,C,P on the
    same grid (gh, gw) -> the window's ``Partial``: logits (q.k - bias) / tau over the lent positions
    within ``radius`` cells (Chebyshev) of each query, always in fp32.

    Tiles of t x t queries (t = ``TILE``) read a (t + 2r)^2 halo of the lent grid with one matrix
    product; a fixed mask keeps each query's own window and the positions inside the frame. One row
    of tiles at a time, so the extra memory is one row's halos, not the frame's."""
    with torch.autocast(query.device.type, enabled=False):
        query, keys, ab = query.float(), memory.keys.float(), memory.ab.float()
        tau = tau.float() if isinstance(tau, Tensor) else tau
        grads = torch.is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in (query, keys, ab, tau))
        b, n, k, _ = query.shape
        c, (gh, gw), r = ab.shape[1], grid, radius
        t = TILE
        th, tw, win = -(-gh // t), -(-gw // t), t + 2 * r
        q = F.pad(query.reshape(b * n, k, gh, gw), (0, tw * t - gw, 0, th * t - gh))
        lent = torch.cat([keys, ab], dim=1).view(b, k + c, gh, gw)
        lent = F.pad(lent, (r, r + tw * t - gw, r, r + th * t - gh))
        margins: dict[tuple[int, int], Tensor] = {}  # the additive mask, per rows cut at the top and bottom
        parts = []
        for i in range(th):
            band = q[:, :, i * t:(i + 1) * t].reshape(b, n, k, t, tw, t)
            band = band.permute(0, 4, 1, 3, 5, 2).reshape(b * tw, n * t * t, k)  # tiles, queries, K
            # tiles, K+C, win^2: the halos as a strided view, copied once into matrix layout
            halo = lent[:, :, i * t:i * t + win].unfold(3, win, t).permute(0, 3, 1, 2, 4).reshape(b * tw, k + c, win * win)
            cut = (max(0, r - i * t), max(0, i * t + win - r - gh))
            if cut not in margins:
                keep = _window_mask(i, t, r, gh, gw, tw, query.device).repeat(b, n, 1)
                margins[cut] = torch.full(keep.shape, -bias, device=query.device).masked_fill_(~keep, _MASKED * 0.01)
            sim = torch.baddbmm(margins[cut], band, halo[:, :k])  # q.k - bias inside the window, -100 outside
            logits = sim / tau if grads else (sim.div_(tau) if isinstance(tau, Tensor) else sim.mul_(1.0 / tau))
            peak = logits.amax(dim=-1)
            # clamped at -80: exp of arguments below about -87 (the masked ones) takes a slow path, 10-35x
            # (measured here); exp(-80) = 2e-35 against the peak's 1 changes no float32 sum
            weights = (torch.exp((logits - peak[..., None]).clamp(min=-80.0)) if grads
                       else logits.sub_(peak[..., None]).clamp_(min=-80.0).exp_())
            weighted = torch.bmm(weights, halo[:, k:].transpose(1, 2))  # tiles, queries, C
            # the largest similarity is the peak logit times tau (the centre is always inside the window)
            parts.append(torch.cat([peak[..., None], weights.sum(dim=-1)[..., None], weighted,
                                    (peak * tau)[..., None]], dim=-1).view(b, tw, n * t * t, c + 3))
        rows = torch.stack(parts, dim=1)  # B,th,tw,N*t*t,C+3 -> B,N,C+3,P
        rows = rows.view(b, th, tw, n, t, t, c + 3).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, n, c + 3, th * t, tw * t)
        rows = rows[..., :gh, :gw].flatten(3)
        return Partial(peak=rows[:, :, 0], total=rows[:, :, 1], weighted=rows[:, :, 2:2 + c], similarity=rows[:, :, -1])


def _window_mask(i: int, t: int, r: int, gh: int, gw: int, tw: int, device: torch.device) -> Tensor:
    """tiles,t*t,win^2 bool for the i-th row of tiles: the halo position lies within r cells of the
    query (both axes) and inside the gh x gw grid."""
    win = t + 2 * r
    a = torch.arange(t, device=device)
    u = torch.arange(win, device=device)
    near = (u[None, :] >= a[:, None]) & (u[None, :] <= a[:, None] + 2 * r)  # t (query), win (halo)
    rows_in = (i * t + u - r >= 0) & (i * t + u - r < gh)  # win
    cols_in = torch.arange(tw, device=device)[:, None] * t + u[None, :] - r  # tiles, win
    cols_in = (cols_in >= 0) & (cols_in < gw)
    row_ok = near & rows_in[None, :]  # t, win
    col_ok = near[None] & cols_in[:, None, :]  # tiles, t, win
    keep = row_ok[None, :, None, :, None] & col_ok[:, None, :, None, :]  # tiles, t, t, win, win
    return keep.reshape(tw, t * t, win * win)
