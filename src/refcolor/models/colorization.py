"""Colorization subnet (paper Eq. 5): encoder-decoder with skips and CNN-Transformer blocks.

Input (CNN branch): W1, S1, W2, S2 (one pair when ``double_head`` is off), the target l and the
reference lab resized to the working size: B*n,C_in,H,W. The Transformer branch receives ``ho_t``
from the correspondence subnet. Three encoder blocks (H/2, H/4, H/8), CNN-Transformer blocks at
H/8, three decoder blocks up-sampling with skip connections, a tanh giving normalised ab.
The last convolution adds to atanh(W1) and starts near zero (see ``forward``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .transformer import CNNTransformerBlock, Grid, conv_in


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_in(cin + cskip, cout), conv_in(cout, cout))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], dim=1))


class ColorizationSubnet(nn.Module):
    def __init__(self, cfg: ModelConfig, num_heads: int) -> None:
        super().__init__()
        c1, c2, c3 = cfg.color_channels
        cin = 3 * num_heads + 1 + 3  # (W ab + S) per head, l, lab_ref
        self.stem = conv_in(cin, c1)
        self.enc1 = nn.Sequential(conv_in(c1, c1, stride=2), conv_in(c1, c1))  # H/2
        self.enc2 = nn.Sequential(conv_in(c1, c2, stride=2), conv_in(c2, c2))  # H/4
        self.enc3 = nn.Sequential(conv_in(c2, c3, stride=2), conv_in(c3, c3))  # H/8
        self.blocks = nn.ModuleList(
            CNNTransformerBlock(c3, cfg.token_dim, cfg.heads, cfg.ffn_ratio, cfg.use_transformer)
            for _ in range(cfg.color_ct_blocks)
        )
        self.dec3 = DecoderBlock(c3, c2, c2)  # -> H/4
        self.dec2 = DecoderBlock(c2, c1, c1)  # -> H/2
        self.dec1 = DecoderBlock(c1, c1, c1)  # -> H
        self.to_ab = nn.Conv2d(c1, 2, 3, 1, 1)
        # The decoder predicts a correction of the first head's warp in tanh space, starting
        # near zero: an untrained subnet reproduces the warp instead of destroying it.
        nn.init.normal_(self.to_ab.weight, std=1e-4)
        nn.init.zeros_(self.to_ab.bias)

    def forward(self, x: Tensor, ho: Tensor | None, grid: Grid) -> Tensor:
        """x: B*n,C_in,H,W; ho: B,n*th*tw,D -> ab B*n,2,H,W in (-1, 1)."""
        s0 = self.stem(x)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        y = self.enc3(s2)
        tokens = ho
        for block in self.blocks:
            y, tokens = block(y, tokens, grid)
        y = self.dec1(self.dec2(self.dec3(y, s2), s1), s0)
        warp_logits = torch.atanh(x[:, :2].clamp(-0.999, 0.999))  # channels 0-1 are W1
        return torch.tanh(self.to_ab(y) + warp_logits)
