"""Linkage subnet (paper Eq. 6-7): an attention memory carried across frame blocks.

The memory ``i`` is a fixed number of token slots (``memory_grid``), so after
10,000 frames it is exactly as large as after one block. Query (Eq. 6)::

    hi_t = R_high + softmax(R_high i^T / sqrt d) i

Storage (Eq. 7)::

    i_t = i + softmax(i ho^T / sqrt d) ho

Both use learned linear projections with residual form. For the first block
(t = 0) Eq. 7 says ``i_t = ho_t``: we resample ``ho_t`` onto the fixed slot grid
by average pooling over frames and space. A LayerNorm after the storage add keeps
the memory's scale bounded however many blocks are added (the paper's Eq. 7 alone
would let it grow without limit over a feature film).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .transformer import Grid


class _CrossAttention(nn.Module):
    """softmax(q(x) k(ctx)^T / sqrt d) v(ctx), projected, added to x, then a residual linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)

    def forward(self, x: Tensor, ctx: Tensor) -> Tensor:
        """x: B,T,D queries; ctx: B,S,D -> B,T,D."""
        attn = F.scaled_dot_product_attention(self.q(x), self.k(ctx), self.v(ctx), scale=1.0 / math.sqrt(x.shape[-1]))
        x = x + self.out(attn)
        return x + self.mlp(self.norm(x))


class LinkageMemory(nn.Module):
    """Reads (Eq. 6) and writes (Eq. 7) a fixed-size memory ``B, M, D`` of tokens."""

    def __init__(self, dim: int, memory_grid: tuple[int, int]) -> None:
        super().__init__()
        self.memory_grid = memory_grid
        self.query = _CrossAttention(dim)
        self.store = _CrossAttention(dim)
        self.store_norm = nn.LayerNorm(dim)

    @property
    def slots(self) -> int:
        return self.memory_grid[0] * self.memory_grid[1]

    def read(self, tokens: Tensor, memory: Tensor | None) -> Tensor:
        """Eq. 6. tokens: B,T,D (R_high as tokens); memory: B,M,D or None (t = 0) -> hi_t B,T,D."""
        if memory is None:
            return tokens
        return self.query(tokens, memory)

    def write(self, memory: Tensor | None, ho: Tensor, grid: Grid) -> Tensor:
        """Eq. 7. memory: B,M,D or None; ho: B,n*th*tw,D -> new memory B,M,D (M fixed)."""
        if memory is None:
            n, th, tw = grid
            b, _, d = ho.shape
            x = ho.view(b, n, th, tw, d).mean(dim=1).permute(0, 3, 1, 2)  # B,D,th,tw
            x = F.adaptive_avg_pool2d(x, self.memory_grid)
            return x.flatten(2).transpose(1, 2).contiguous()
        return self.store_norm(self.store(memory, ho))
