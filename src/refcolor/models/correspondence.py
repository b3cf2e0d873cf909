"""Correspondence subnet and the double-head non-local operation (paper Eq. 1-4, Fig. 3a/3c).

Named steps, called by ``RefColorNet``:
  ``embed_high``  R_high -> reduced features + tokens (what the linkage memory reads with)
  ``augment``     three CNN-Transformer blocks: (R_high, hi_t) -> (R'_high, ho_t)
  ``fuse``        R'_high + R_low -> R' (residual blocks, feat_channels at h4)
  ``heads``       R' -> one or two normalised non-local heads (the augmented head adds alpha*proj(R'_high));
                  with ``raw_keys`` head 1 is [raw matching taps, head1(R') up-sampled] at h4
                  (with ``key_mix``: each part normalised on its own, mixed by a learned weight)
  ``temperature`` tau of Eq. 2, fixed or learned within ``tau_range``
and the functional ``nonlocal_warp`` (Eq. 1-3), computed frame by frame and in row chunks so
that no (N*P)^2 matrix is ever built.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from .propagation import Partial
from .transformer import CNNTransformerBlock, Grid, conv_in, to_tokens


def center_normalize(feat: Tensor) -> Tensor:
    """Mean-centred, L2-normalised features for the cosine correlation of Eq. 1.

    feat: B,K,P (P positions of ONE image) -> B,K,P; the mean is over that image's positions.
    """
    feat = feat - feat.mean(dim=-1, keepdim=True)
    return feat / feat.norm(dim=1, keepdim=True).clamp_min(1e-6)


def nonlocal_warp(query: Tensor, key: Tensor, value: Tensor, tau: float | Tensor, chunk: int = 1024,
                  block: int = 1 << 19, extra: Partial | None = None) -> tuple[Tensor, Tensor]:
    """Eq. 2-3 for one head, bounded memory, always in fp32.

    query: B,N,K,P (centred + normalised per frame); key: B,K,Pr (reference, normalised);
    value: B,C,Pr (reference chroma). Returns W: B,N,C,P and S: B,N,1,P.
    The correlation of one frame is built ``chunk`` rows at a time (1024: 1.09-1.15x faster than
    4096 at 216x384 with identical output, docs/PERFORMANCE.md; the rows stay in cache): peak extra memory is
    B*chunk*Pr floats, independent of N and of the video's length.
    Without autograd (inference: no input requires a gradient, or grad mode is off; not while
    traced for ONNX or compiled) the rows come in smaller chunks of about ``block`` logits (512 Ki
    floats, 2 MiB: 101 rows of a 216x384 reference, which stay in cache from the correlation
    through the softmax to the aggregation), as plain matrix products written into the output,
    never the whole P x Pr matrix; the result equals the autograd path's to float rounding
    (tests/models/test_nonlocal_chunked.py) and the network is faster (docs/PERFORMANCE.md).
    Under autocast the correlation and softmax still run in fp32: at tau = 0.01 the logits span
    about +-100 and bf16 puts errors of 0.2-0.4 on them (Quality issue).
    ``extra``: the softmax's part over other positions (propagation's window), merged per query
    into one softmax over the reference's and those positions; its similarity joins Eq. 3's max.
    """
    with torch.autocast(query.device.type, enabled=False):
        query, key, value = query.float(), key.float(), value.float()
        if isinstance(tau, Tensor):
            tau = tau.float()
        grads = torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in (query, key, value, tau))
        if grads or torch.jit.is_tracing() or torch.compiler.is_compiling():
            # training: the autograd path as it was; ONNX export and torch.compile keep it too
            # (their graphs would unroll the small chunks' loop)
            return _warp_fp32(query, key, value, tau, chunk, extra)
        b, n, _, p = query.shape
        rows = max(1, min(chunk, block // key.shape[-1]))
        warped = query.new_empty(b, n, value.shape[1], p)
        similarity = query.new_empty(b, n, 1, p)
        for i in range(n):
            q_t = query[:, i].transpose(1, 2).contiguous()  # B,P,K
            for start in range(0, p, rows):
                end = min(start + rows, p)
                corr = torch.bmm(q_t[:, start:end], key)  # B,p,Pr: Eq. 1 (cosine of centred features)
                similarity[:, i, 0, start:end] = corr.amax(dim=-1)  # Eq. 3
                logits = corr.div_(tau) if isinstance(tau, Tensor) else corr.mul_(1.0 / tau)  # in place
                if extra is None:
                    attn = torch.softmax(logits, dim=-1)  # Eq. 2
                    warped[:, i, :, start:end] = torch.bmm(value, attn.transpose(1, 2))  # B,C,p: Eq. 2's sum
                    continue
                # the fused softmax, then its part of the merge: the largest weight is 1 / the sum of
                # exp(logit - peak), so the total costs one max instead of a second pass of exp
                # (a manual exp-and-sum here was 1.7x torch.softmax's time in the profile)
                attn = torch.softmax(logits, dim=-1)
                total = attn.amax(dim=-1).reciprocal_()
                peak = similarity[:, i, 0, start:end] / tau
                weighted = torch.bmm(value, attn.transpose(1, 2)).mul_(total[:, None])
                warped[:, i, :, start:end] = _merge(peak, total, weighted, _rows(extra, i, start, end))
            if extra is not None:
                similarity[:, i, 0] = torch.maximum(similarity[:, i, 0], extra.similarity[:, i])
        return warped, similarity


def _rows(part: Partial, i: int, start: int, end: int) -> Partial:
    """Frame i, positions start:end of a Partial."""
    return Partial(part.peak[:, i, start:end], part.total[:, i, start:end], part.weighted[:, i, :, start:end],
                   part.similarity[:, i, start:end])


def _merge(peak: Tensor, total: Tensor, weighted: Tensor, other: Partial) -> Tensor:
    """Two parts of one softmax (peak, total B,p; weighted B,C,p) -> its weighted sum B,C,p (Eq. 2),
    each part rescaled to the larger of the two peaks."""
    top = torch.maximum(peak, other.peak)
    mine, theirs = torch.exp(peak - top), torch.exp(other.peak - top)
    total = total * mine + other.total * theirs
    return (weighted * mine[:, None] + other.weighted * theirs[:, None]) / total[:, None]


def _warp_fp32(query: Tensor, key: Tensor, value: Tensor, tau: float | Tensor, chunk: int = 1024,
               extra: Partial | None = None) -> tuple[Tensor, Tensor]:
    if isinstance(tau, Tensor):
        tau = tau.float()
    b, n, _, p = query.shape
    warped, similarity = [], []
    for i in range(n):
        w_rows, s_rows = [], []
        for start in range(0, p, chunk):
            q = query[:, i, :, start : start + chunk]  # B,K,p
            corr = torch.einsum("bkp,bkr->bpr", q, key)  # Eq. 1 (cosine of centred features)
            s_rows.append(corr.amax(dim=-1))  # Eq. 3
            # Eq. 2; at inference the scaling reuses the correlation's memory (no second B*p*Pr tensor).
            logits = corr / tau if (corr.requires_grad or isinstance(tau, Tensor)) else corr.mul_(1.0 / tau)
            if extra is None:
                attn = torch.softmax(logits, dim=-1)
                w_rows.append(torch.einsum("bpr,bcr->bcp", attn, value))
                continue
            peak = logits.amax(dim=-1).detach()  # any constant per row is exact; detached like softmax's
            weights = torch.exp(logits - peak[..., None])
            w_rows.append(_merge(peak, weights.sum(dim=-1), torch.einsum("bpr,bcr->bcp", weights, value),
                                 _rows(extra, i, start, start + q.shape[-1])))
        warped.append(torch.cat(w_rows, dim=-1))
        sim = torch.cat(s_rows, dim=-1)
        similarity.append((sim if extra is None else torch.maximum(sim, extra.similarity[:, i]))[:, None])
    return torch.stack(warped, dim=1), torch.stack(similarity, dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_in(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class CorrespondenceSubnet(nn.Module):
    def __init__(self, cfg: ModelConfig, low_channels: int, high_channels: int, raw_channels: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        c, d = cfg.feat_channels, cfg.token_dim
        self.reduce_high = conv_in(high_channels, c, k=1)
        self.tokenize = nn.Conv2d(c, d, 1) if cfg.use_transformer else None
        self.blocks = nn.ModuleList(
            CNNTransformerBlock(c, d, cfg.corr_heads, cfg.ffn_ratio, cfg.use_transformer) for _ in range(cfg.num_ct_blocks)
        )
        self.fuse_in = conv_in(low_channels + c, c, k=1)
        self.res_blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(cfg.num_res_blocks)])
        k = cfg.nonlocal_channels
        self.head1 = nn.Conv2d(c, k, 1)
        if cfg.raw_keys:
            # Small weights: the concatenated head starts as the raw taps alone (= the warp's keys);
            # Adam grows them at a rate independent of their size.
            nn.init.normal_(self.head1.weight, std=cfg.raw_head_init)
            nn.init.zeros_(self.head1.bias)
        self.key_proj = None
        if cfg.key_proj_hidden > 0:  # learned key of the raw taps, at their h4 grid
            self.key_proj = nn.Sequential(nn.Conv2d(raw_channels, cfg.key_proj_hidden, 1), nn.ReLU(inplace=True),
                                          nn.Conv2d(cfg.key_proj_hidden, k, 1))
        if cfg.key_mix:
            m = cfg.key_mix_init
            self.key_mix_logit = nn.Parameter(torch.tensor(math.log(m / (1 - m))))
        if cfg.learn_tau:
            lo, hi = cfg.tau_range
            u = (cfg.tau - lo) / (hi - lo)
            self.tau_logit = nn.Parameter(torch.tensor(math.log(u / (1 - u))))
        if cfg.double_head:
            self.head2 = nn.Conv2d(c, k, 1)
            self.augment_proj = nn.Conv2d(c, k, 1)  # parametric projection of R'_high
            self.alpha = nn.Parameter(torch.tensor(float(cfg.alpha)))

    @property
    def num_heads(self) -> int:
        return 2 if self.cfg.double_head else 1

    def temperature(self) -> float | Tensor:
        """tau of Eq. 2: the config's constant, or tau_lo + (tau_hi - tau_lo) * sigmoid(logit)."""
        if not self.cfg.learn_tau:
            return self.cfg.tau
        lo, hi = self.cfg.tau_range
        return lo + (hi - lo) * torch.sigmoid(self.tau_logit.float())

    def token_grid(self, n: int, h8: int, w8: int) -> Grid:
        pool = self.cfg.token_pool
        return (n, -(-h8 // pool), -(-w8 // pool))

    def embed_high(self, r_high: Tensor, grid: Grid) -> tuple[Tensor, Tensor | None]:
        """r_high: B*n,C_high,h8,w8 -> (reduced B*n,C,h8,w8, tokens B,n*th*tw,D or None)."""
        high = self.reduce_high(r_high)
        tokens = to_tokens(self.tokenize(high), grid) if self.cfg.use_transformer else None
        return high, tokens

    def augment(self, high: Tensor, hi: Tensor | None, grid: Grid) -> tuple[Tensor, Tensor | None]:
        """CNN-Transformer blocks: (R_high, hi_t) -> (R'_high, ho_t)."""
        tokens = hi
        for block in self.blocks:
            high, tokens = block(high, tokens, grid)
        return high, tokens

    def fuse(self, high_aug: Tensor, r_low: Tensor) -> Tensor:
        """R'_high (h8) + R_low (h4) -> R' on the non-local grid: B*n,C,h4,w4 (or h8,w8 when
        ``nonlocal_stride`` is 8, where the residual blocks then cost 4x less)."""
        if self.cfg.nonlocal_stride == 8:
            low = F.adaptive_avg_pool2d(r_low, high_aug.shape[-2:])
            return self.res_blocks(self.fuse_in(torch.cat([low, high_aug], dim=1)))
        up = F.interpolate(high_aug, size=r_low.shape[-2:], mode="bilinear", align_corners=False)
        return self.res_blocks(self.fuse_in(torch.cat([r_low, up], dim=1)))

    def heads(self, feat: Tensor, high_aug: Tensor, raw: Tensor | None = None) -> list[Tensor]:
        """R', R'_high (and the raw matching taps B,C_raw,h4,w4 when ``raw_keys``) -> list (1 or 2)
        of centred, normalised heads B*n,K,P_k. Head k lives on its own grid: the fusion grid, or
        the raw taps' h4 grid for head 1 with ``raw_keys``; ``head_grid`` says which."""
        grid_size = feat.shape[-2:]
        first = self.head1(feat)
        mixed = None
        if raw is not None:
            if first.shape[-2:] != raw.shape[-2:]:
                first = F.interpolate(first, size=raw.shape[-2:], mode="bilinear", align_corners=False)
            if self.key_proj is not None:
                first = first + self.key_proj(raw)
            if self.cfg.key_mix:
                mixed = self.mix_keys(raw, first)
            else:
                first = torch.cat([raw, first], dim=1)
        out = [first]
        if self.cfg.double_head:
            aug = self.augment_proj(high_aug)
            if aug.shape[-2:] != grid_size:
                aug = F.interpolate(aug, size=grid_size, mode="bilinear", align_corners=False)
            out.append(self.head2(feat) + self.alpha * aug)  # the augmented head
        with torch.autocast(feat.device.type, enabled=False):
            keys = [center_normalize(h.flatten(2).float()) for h in out]
        if mixed is not None:
            keys[0] = mixed
        return keys

    def mix_keys(self, raw: Tensor, learned: Tensor) -> Tensor:
        """[sqrt(1 - m) raw, sqrt(m) learned], each part centred and normalised on its own:
        a unit key whose cosine is (1 - m) cos_raw + m cos_learned. B,C_raw+K,P."""
        with torch.autocast(raw.device.type, enabled=False):
            m = torch.sigmoid(self.key_mix_logit.float())
            r = center_normalize(raw.flatten(2).float())
            g = center_normalize(learned.flatten(2).float())
            return torch.cat([r * (1 - m).sqrt(), g * m.sqrt()], dim=1)
