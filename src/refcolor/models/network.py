"""RefColorNet: the whole method of the paper as named steps (Cutie style).

    ref = net.encode_reference(lab_ref)          # once per reference (or shot)
    memory = net.init_memory()                   # empty linkage memory (t = 0)
    ab, memory = net.step(l_block, ref, memory)  # one block of N frames, in parallel

``forward`` composes these over a clip for training. Shapes use DESIGN.md's vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..color import gray_rgb_from_l
from ..config import ModelConfig, check_size
from ..errors import RefcolorError
from .backbones import Backbone, build_backbone
from .colorization import ColorizationSubnet
from .correspondence import CorrespondenceSubnet, nonlocal_warp
from .linkage import LinkageMemory
from .propagation import Propagated, join, lend, window_partial

# What one block hands the next: None before the first block; the linkage memory B,M,D; or, with
# ``propagate_bias`` >= 0, a dict of tensors: "tokens" (the linkage memory, when the model has one),
# "keys" B,K,P and "ab" B,2,P (models/propagation.py). Plain tensors so that ``resume`` saves it.
Memory = Tensor | dict[str, Tensor] | None


@dataclass
class RefState:
    """A reference encoded once: per-head keys on the non-local grid, its chroma there, its lab."""

    keys: list[Tensor]  # per head: B,K,Pr_k (mean-centred, L2-normalised)
    ab: list[Tensor]  # per head: B,2,Pr_k normalised chroma on that head's grid
    lab: Tensor  # B,3,H,W normalised lab of the (first) reference, for the colorization input

    @staticmethod
    def concat(states: list["RefState"]) -> "RefState":
        """Several references: the correspondence attends over the union of their positions."""
        return RefState(
            keys=[torch.cat(k, dim=-1) for k in zip(*(s.keys for s in states))],
            ab=[torch.cat(a, dim=-1) for a in zip(*(s.ab for s in states))],
            lab=states[0].lab,
        )


@dataclass
class BlockOutput:
    ab: Tensor  # B,N,2,H,W in (-1, 1)
    warped: list[Tensor]  # per head B,N,2,gh,gw: W_k of Eq. 2
    similarity: list[Tensor]  # per head B,N,1,gh,gw: S_k of Eq. 3
    memory: Memory


@dataclass(frozen=True)
class Ablation:
    """Evaluation-time component switches: the paper's Table 2 on ONE trained checkpoint, no retraining.

    Not part of ``ModelConfig`` (checkpoints and training are unaffected); all off = the full model.
    ``RefColorNet.set_ablation`` sets them; they act in ``_features`` and ``run_block``:

    * ``no_subnet``: output = head 1's warp W1 up-sampled (bilinear) to the working size along the
      subnet's own path (to H/color_scale, then H), so the row measures what the subnet computes and
      not a change of resampling: with lite's color_scale 2, a one-step up-sampling alone raised WE
      by 5 % on blackswan. The subnet is not run (the linkage memory is still written from ho).
    * ``reset_memory``: every block starts with an empty memory: no linkage read (Eq. 6 reads
      nothing) and, with propagation on, nothing lent either.
    * ``reset_linkage``: only the linkage tokens are emptied at every block; propagation (head 1
      reading the previous block's last frame) is kept, so the row measures the paper's linkage
      subnet alone. Refused where it equals ``reset_memory`` (no propagation).
    * ``no_head2``: the colorization subnet receives W1,S1 in place of W2,S2. Zeros would be inputs
      the subnet never saw (gray chroma, zero similarity everywhere) and would measure its reaction
      to garbage; a copy of head 1 is what it sees when both heads agree, so it removes only
      head 2's information. Head 2's warp is not computed.
    * ``no_transformer``: the correspondence subnet's CNN-Transformer blocks are skipped on both
      branches (each block replaced by its identity path): R'_high = reduced R_high and ho = hi,
      the tokens after the linkage read. The colorization subnet's own blocks still run, on those
      tokens, and the linkage memory stores them. Applies to the reference too.
    """

    no_subnet: bool = False
    reset_memory: bool = False
    reset_linkage: bool = False
    no_head2: bool = False
    no_transformer: bool = False


class RefColorNet(nn.Module):
    def __init__(self, cfg: ModelConfig, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else build_backbone(cfg.backbone, cfg.pretrained)
        self.correspondence = CorrespondenceSubnet(cfg, self.backbone.low_channels, self.backbone.high_channels,
                                                   self.backbone.match_channels)
        self.colorization = ColorizationSubnet(cfg, self.correspondence.num_heads)
        self.linkage = LinkageMemory(cfg.token_dim, cfg.memory_grid) if cfg.use_linkage else None
        self.ablation = Ablation()

    def set_ablation(self, ablation: Ablation) -> None:
        """Switch components off for evaluation (``Ablation``); set it before encoding references."""
        if ablation.reset_memory and self.linkage is None:
            raise RefcolorError("ablation reset_memory: this model has no linkage memory (use_linkage=False)")
        if ablation.reset_linkage and (self.linkage is None or self.cfg.propagate_bias < 0):
            raise RefcolorError("ablation reset_linkage: without propagation it is the same as reset_memory")
        if ablation.no_head2 and not self.cfg.double_head:
            raise RefcolorError("ablation no_head2: this model has one head (double_head=False)")
        if ablation.no_transformer and not (self.cfg.use_transformer and self.cfg.num_ct_blocks):
            raise RefcolorError("ablation no_transformer: this model has no correspondence CNN-Transformer blocks "
                                "(use_transformer=False or num_ct_blocks=0)")
        self.ablation = ablation

    # -- named steps -----------------------------------------------------------------
    def _features(self, l: Tensor, memory: Memory, n: int) -> tuple[list[Tensor], Tensor | None, tuple, list[tuple]]:
        """l: B*n,1,H,W -> (heads: per head B*n,K,P_k; ho: B,T,D; token grid; per-head grid sizes)."""
        taps = self.backbone.taps(gray_rgb_from_l(l))
        r_low, r_high = self.backbone.assemble(taps)
        grid = self.correspondence.token_grid(n, *r_high.shape[-2:])
        high, tokens = self.correspondence.embed_high(r_high, grid)
        hi = self.linkage.read(tokens, memory) if (self.linkage is not None and tokens is not None) else tokens
        if self.ablation.no_transformer:
            high_aug, ho = high, hi  # every CNN-Transformer block replaced by its identity path
        else:
            high_aug, ho = self.correspondence.augment(high, hi, grid)
        feat = self.correspondence.fuse(high_aug, r_low)
        raw = self.backbone.match_features(taps) if self.cfg.raw_keys else None
        heads = self.correspondence.heads(feat, high_aug, raw)
        sizes = [tuple(feat.shape[-2:])] * len(heads)
        if raw is not None:
            sizes[0] = tuple(raw.shape[-2:])
        return heads, ho, grid, sizes

    def encode_reference(self, lab_ref: Tensor) -> RefState:
        """lab_ref: B,3,H,W normalised lab (l in [-1, 1], ab / 110) -> RefState.

        The reference goes through the same backbone, CNN-Transformer blocks and fusion as the
        frames (shared weights, "treated as the grayscale frames"), as a block of its own with
        an empty memory, so it is encoded once per video rather than once per block.
        """
        check_size(*lab_ref.shape[-2:])
        heads, _, _, sizes = self._features(lab_ref[:, :1], None, 1)
        ab = [F.adaptive_avg_pool2d(lab_ref[:, 1:], size).flatten(2) for size in sizes]
        return RefState(keys=heads, ab=ab, lab=lab_ref)

    def init_memory(self) -> Memory:
        """The empty linkage memory (t = 0 in Eq. 6-7)."""
        return None

    def run_block(self, l_block: Tensor, ref: RefState, memory: Memory) -> BlockOutput:
        """l_block: B,N,1,H,W normalised l -> BlockOutput with ab B,N,2,H,W and the new memory."""
        b, n, _, h, w = l_block.shape
        check_size(h, w)
        if self.ablation.reset_memory:
            memory = None
        tokens, lent = split_memory(memory)
        if self.ablation.reset_linkage:
            tokens = None
        l = l_block.reshape(b * n, 1, h, w)
        heads, ho, grid, sizes = self._features(l, tokens, n)
        cs = self.cfg.color_scale  # the colorization subnet runs at (h, w) / cs
        hc, wc = h // cs, w // cs
        warped, similarity, guidance = [], [], []
        tau = self.correspondence.temperature()
        used = heads[:1] if self.ablation.no_head2 else heads
        for i, (q, k, v, (gh, gw)) in enumerate(zip(used, ref.keys, ref.ab, sizes)):
            q = q.view(b, n, *q.shape[1:])
            extra = None
            if i == 0 and lent is not None and self.cfg.propagate_window:  # propagation, in a window
                extra = window_partial(q, lent, (gh, gw), self.cfg.propagate_window, self.cfg.propagate_bias, tau)
            elif i == 0:  # head 1 also reads the previous block's last frame (propagation)
                q, k, v = join(q, k, v, lent, self.cfg.propagate_bias)
            wk, sk = nonlocal_warp(q, k, v, tau, extra=extra)
            wk, sk = wk.view(b, n, 2, gh, gw), sk.view(b, n, 1, gh, gw)
            warped.append(wk)
            similarity.append(sk)
            up = F.interpolate(torch.cat([wk, sk], 2).flatten(0, 1), size=(hc, wc), mode="bilinear", align_corners=False)
            guidance.append(up)
        if self.ablation.no_head2:
            guidance.append(guidance[0])  # W1,S1 in place of W2,S2 (see Ablation)
        if self.ablation.no_subnet:
            ab = guidance[0][:, :2]  # W1 at the subnet's size (see Ablation)
        else:
            l_c = F.avg_pool2d(l, cs) if cs > 1 else l
            lab_ref = ref.lab if ref.lab.shape[-2:] == (hc, wc) else F.interpolate(ref.lab, size=(hc, wc), mode="area")
            lab_ref = lab_ref[:, None].expand(b, n, 3, hc, wc).reshape(b * n, 3, hc, wc)
            x = torch.cat([*guidance, l_c, lab_ref], dim=1)  # Eq. 5: W1 S1 W2 S2 l y_lab
            ab = self.colorization(x, ho, grid)
        if cs > 1:
            ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
        ab = ab.view(b, n, 2, h, w)
        if self.cfg.chroma_gain != 1.0:  # after everything the memory keeps: it changes only the output
            ab = ab * self.cfg.chroma_gain
        if self.linkage is not None and ho is not None:
            tokens = self.linkage.write(tokens, ho, grid)
        memory = tokens
        if self.cfg.propagate_bias >= 0:
            # the memory lends head 1's own warp W1, not the subnet's output: measured on davis16-dev,
            # lending the output (up-sampled, then pooled back) faded color block after block
            k1 = heads[0]
            memory = join_memory(tokens, lend(k1.view(b, n, *k1.shape[1:]), warped[0], self.cfg.propagate_stride))
        return BlockOutput(ab=ab, warped=warped, similarity=similarity, memory=memory)

    def step(self, l_block: Tensor, ref: RefState, memory: Memory) -> tuple[Tensor, Memory]:
        """One block of N frames: (ab B,N,2,H,W, new memory)."""
        out = self.run_block(l_block, ref, memory)
        return out.ab, out.memory

    def forward(self, l_clip: Tensor, lab_ref: Tensor, block_size: int | None = None) -> list[BlockOutput]:
        """Training: a clip B,T,1,H,W in blocks of N frames, the memory carried across blocks."""
        n = block_size or self.cfg.train_block_size
        ref = self.encode_reference(lab_ref)
        memory = self.init_memory()
        outputs = []
        for start in range(0, l_clip.shape[1], n):
            out = self.run_block(l_clip[:, start : start + n], ref, memory)
            memory = out.memory
            outputs.append(out)
        return outputs


def split_memory(memory: Memory) -> tuple[Tensor | None, Propagated | None]:
    """Memory -> (linkage tokens, what propagation lends)."""
    if not isinstance(memory, dict):
        return memory, None
    return memory.get("tokens"), Propagated(keys=memory["keys"], ab=memory["ab"])


def join_memory(tokens: Tensor | None, lent: Propagated) -> dict[str, Tensor]:
    out = {"keys": lent.keys, "ab": lent.ab}
    if tokens is not None:
        out["tokens"] = tokens
    return out


def build_model(cfg: ModelConfig) -> RefColorNet:
    """Builder: the backbone is built by ``build_backbone`` and injected."""
    return RefColorNet(cfg, build_backbone(cfg.backbone, cfg.pretrained))
