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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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
