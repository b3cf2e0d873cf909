"""``warp``: a training-free colorizer, the baseline every trained model must beat.

The non-local warp of Eq. 1-3 on ImageNet EfficientNet-Lite0 features, with no trained layer:
taps of blocks 1, 2 and 4 brought to h4 x w4 (24 + 40 + 112 channels), mean-centred cosine
correlation with the reference, ``softmax(M / tau)`` over reference positions (tau = 0.01),
the reference chroma averaged accordingly and up-sampled to the working size. It has the
same named steps as ``RefColorNet`` so that every tool treats both alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..color import gray_rgb_from_l
from ..config import WARP_PRESETS, check_size
from .backbones import Backbone, build_backbone
from .correspondence import center_normalize, nonlocal_warp
from .network import Memory, RefState, join_memory, split_memory
from .propagation import join, lend


@dataclass(frozen=True)
class WarpConfig:
    preset: str = "warp"
    tau: float = 0.01
    propagate_bias: float = -1.0  # >= 0: the previous block's last frame joins the reference (models/propagation.py)


class WarpModel(nn.Module):
    def __init__(self, backbone: Backbone, cfg: WarpConfig = WarpConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone

    def match_keys(self, l: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """l: B,1,H,W -> centred, normalised features B,K,P at h4 x w4."""
        feats = self.backbone.match_features(self.backbone.taps(gray_rgb_from_l(l)))
        return center_normalize(feats.flatten(2)), tuple(feats.shape[-2:])

    def encode_reference(self, lab_ref: Tensor) -> RefState:
        check_size(*lab_ref.shape[-2:])
        key, size = self.match_keys(lab_ref[:, :1])
        ab = F.adaptive_avg_pool2d(lab_ref[:, 1:], size).flatten(2)
        return RefState(keys=[key], ab=[ab], lab=lab_ref)

    def init_memory(self) -> Memory:
        return None

    def step(self, l_block: Tensor, ref: RefState, memory: Memory) -> tuple[Tensor, Memory]:
        """l_block: B,N,1,H,W -> (ab B,N,2,H,W, memory: None, or with ``propagate_bias`` >= 0 the
        block's last frame for the next block)."""
        b, n, _, h, w = l_block.shape
        check_size(h, w)
        key, (gh, gw) = self.match_keys(l_block.reshape(b * n, 1, h, w))
        q = key.view(b, n, *key.shape[1:])
        q, k, v = join(q, ref.keys[0], ref.ab[0], split_memory(memory)[1], self.cfg.propagate_bias)
        warped, _ = nonlocal_warp(q, k, v, self.cfg.tau)
        ab = F.interpolate(warped.reshape(b * n, 2, gh, gw), size=(h, w), mode="bilinear", align_corners=False)
        if self.cfg.propagate_bias < 0:
            return ab.view(b, n, 2, h, w), memory
        lent = lend(key.view(b, n, *key.shape[1:]), warped.view(b, n, 2, gh, gw))
        return ab.view(b, n, 2, h, w), join_memory(None, lent)

    def similarity(self, l_block: Tensor, ref: RefState) -> Tensor:
        """l_block: B,N,1,H,W -> S of Eq. 3 (best cosine match in the reference) B,N,1,h4,w4.

        Used by ``refcolor.coverage`` to find what the references do not hold, with any model."""
        b, n, _, h, w = l_block.shape
        check_size(h, w)
        key, (gh, gw) = self.match_keys(l_block.reshape(b * n, 1, h, w))
        _, sim = nonlocal_warp(key.view(b, n, *key.shape[1:]), ref.keys[0], ref.ab[0], self.cfg.tau)
        return sim.view(b, n, 1, gh, gw)


def build_warp_model(name: str = "warp") -> WarpModel:
    """A named variant of ``config.WARP_PRESETS`` (config overrides)."""
    return WarpModel(build_backbone("efficientnet_lite0", pretrained=True), WarpConfig(preset=name, **WARP_PRESETS[name]))
