"""CNN-Transformer block (paper Fig. 3b) and the 3-D sine position embedding.

A Conformer-style dual branch: a CNN branch (InstanceNorm, 3 convolutions) keeps
local texture; a Transformer branch (LayerNorm, multi-head attention, residual
2-layer FFN) over tokens of all N frames of a block gives long-range spatial and
short-term temporal dependency. Coupling units exchange features both ways.
The Transformer branch works on a pooled token grid (n, th, tw) so that attention
over N frames stays cheap; its tokens enter as ``hi_t`` and leave as ``ho_t``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Grid = tuple[int, int, int]  # (n, th, tw): frames, token rows, token columns


def sine_position_embedding_3d(grid: Grid, dim: int, device=None, dtype=None) -> Tensor:
    """DETR/VisTR sine embedding over (frame, y, x), normalised to [0, 2 pi].

    Returns n*th*tw, dim. ``dim`` is split into three even parts (t, y, x).
    """
    n, th, tw = grid
    part = (dim // 3) // 2 * 2
    sizes = [part, part, dim - 2 * part]
    axes = [torch.arange(s, device=device, dtype=torch.float32) for s in (n, th, tw)]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    coords = (coords + 0.5) / torch.tensor([n, th, tw], device=device, dtype=torch.float32) * 2 * math.pi
    out = []
    for axis, size in enumerate(sizes):
        freqs = 10000.0 ** (2 * (torch.arange(size // 2, device=device, dtype=torch.float32)) / size)
        angles = coords[:, axis : axis + 1] / freqs
        out.append(torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1))
    return torch.cat(out, dim=1).to(dtype or torch.float32)


class MultiHeadSelfAttention(nn.Module):
    """Pre-norm MHA with fused ``scaled_dot_product_attention``; q = k = x + pos, v = x."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qk = nn.Linear(dim, 2 * dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """x: B,T,D; pos: T,D -> B,T,D."""
        b, t, d = x.shape
        q, k = self.qk(x + pos).chunk(2, dim=-1)
        v = self.v(x)
        split = lambda y: y.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """LayerNorm -> MHA -> residual; LayerNorm -> 2-layer FFN -> residual."""

    def __init__(self, dim: int, heads: int, ffn_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * ffn_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.ffn(self.norm2(x))


def conv_in(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv -> InstanceNorm (affine) -> ReLU: the CNN branch's unit."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.InstanceNorm2d(cout, affine=True),
        nn.ReLU(inplace=True),
    )


def to_tokens(x: Tensor, grid: Grid) -> Tensor:
    """B*n,C,h,w -> B, n*th*tw, C by adaptive average pooling to the token grid."""
    n, th, tw = grid
    pooled = F.adaptive_avg_pool2d(x, (th, tw))  # B*n,C,th,tw
    bn, c = pooled.shape[:2]
    return pooled.view(bn // n, n, c, th * tw).permute(0, 1, 3, 2).reshape(bn // n, n * th * tw, c)


def from_tokens(tokens: Tensor, grid: Grid, size: tuple[int, int]) -> Tensor:
    """B, n*th*tw, C -> B*n,C,h,w (bilinear up-sampling from the token grid)."""
    n, th, tw = grid
    b, _, c = tokens.shape
    x = tokens.view(b, n, th, tw, c).permute(0, 1, 4, 2, 3).reshape(b * n, c, th, tw)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CNNTransformerBlock(nn.Module):
    """One parallel CNN-Transformer block (Fig. 3b).

    CNN branch: x -> conv-IN-ReLU -> (+ Transformer->CNN coupling) -> conv-IN-ReLU -> conv-IN,
    residual. Transformer branch: tokens (+ CNN->Transformer coupling) -> TransformerLayer.
    With ``use_transformer=False`` (ablation) only the CNN branch runs and tokens pass through.
    """

    def __init__(self, channels: int, token_dim: int, heads: int, ffn_ratio: float, use_transformer: bool = True) -> None:
        super().__init__()
        self.use_transformer = use_transformer
        self.conv1 = conv_in(channels, channels)
        self.conv2 = conv_in(channels, channels)
        self.conv3 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.InstanceNorm2d(channels, affine=True))
        if use_transformer:
            # Coupling units (Conformer's FCU): 1x1 convs that change width, pooled/up-sampled grids.
            self.cnn_to_tokens = nn.Sequential(nn.Conv2d(channels, token_dim, 1))
            self.cnn_to_tokens_norm = nn.LayerNorm(token_dim)
            self.tokens_to_cnn = nn.Sequential(nn.Conv2d(token_dim, channels, 1), nn.InstanceNorm2d(channels, affine=True))
            self.layer = TransformerLayer(token_dim, heads, ffn_ratio)

    def forward(self, x: Tensor, tokens: Tensor | None, grid: Grid) -> tuple[Tensor, Tensor | None]:
        """x: B*n,C,h,w; tokens: B,n*th*tw,D -> same shapes."""
        y = self.conv1(x)
        if self.use_transformer and tokens is not None:
            tokens = tokens + self.cnn_to_tokens_norm(to_tokens(self.cnn_to_tokens(y), grid))
            pos = sine_position_embedding_3d(grid, tokens.shape[-1], tokens.device, tokens.dtype)
            tokens = self.layer(tokens, pos)
            y = y + self.tokens_to_cnn(from_tokens(tokens, grid, y.shape[-2:]))
        y = self.conv3(self.conv2(y))
        return F.relu(x + y), tokens
