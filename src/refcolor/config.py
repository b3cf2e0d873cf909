"""Model configuration: one dataclass, presets as overrides (never copied classes).

Every checkpoint stores ``ModelConfig.to_json()`` in its metadata so that
``load_model`` rebuilds the right network by itself (nanoGPT style).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import RefcolorError

BACKBONES = ("resnet101", "efficientnet_lite0")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of ``RefColorNet``. Defaults are the paper's (section 4)."""

    preset: str = "paper"
    backbone: str = "resnet101"
    pretrained: bool = True
    # Correspondence subnet
    feat_channels: int = 512  # R' channels at h4 x w4
    nonlocal_channels: int = 256  # width of each non-local head (Eq. 1)
    nonlocal_stride: int = 4  # grid of the correlation: 4 -> h4 x w4, 8 -> h8 x w8
    # Addition (QUALITY-NOTES, "learned matching"): head 1 also carries the backbone's raw
    # matching taps at h4 (the training-free warp's features), so the untrained network
    # reproduces ``warp`` and training only has to improve on it.
    raw_keys: bool = False
    raw_head_init: float = 1e-3  # std of head 1's weights when raw_keys: starts as the warp
    # Matching that learning can move (Quality issue; QUALITY-NOTES "learned matching"). With
    # key_mix, head 1's raw taps and its learned part are normalised separately and mixed by a
    # learned weight m (correlation = (1 - m) raw + m learned), so the learned part cannot stay a
    # small fraction of the key's norm. key_proj_hidden > 0 adds a learned 2-layer projection of
    # the raw taps computed at h4 (not up-sampled from the fusion grid). The defaults keep the
    # older checkpoints' architecture, whose configs lack these keys.
    key_mix: bool = False
    key_mix_init: float = 0.1  # initial m
    key_proj_hidden: int = 0  # hidden width of the h4 projection of the raw taps (0 = none)
    tau: float = 0.01  # softmax temperature, the paper's gamma (initial value when learn_tau)
    learn_tau: bool = False  # tau becomes a parameter, bounded to tau_range
    tau_range: tuple[float, float] = (0.005, 0.03)  # above ~0.03 colors wash out (QUALITY-NOTES)
    alpha: float = 0.75  # initial weight of the augmented head's parametric add
    # addition (models/propagation.py): the previous block's last frame joins head 1's reference
    # positions with its logits lowered by this margin (cosine units); < 0: off (the paper's model)
    propagate_bias: float = -1.0
    # the lent frame's positions on every s-th row and column of head 1's grid: s x s fewer memory
    # positions, so propagation adds 1/s^2 of the correlation rather than doubling it (1 = all)
    propagate_stride: int = 1
    # r > 0: each position reads only the lent frame's positions within r cells of itself on head 1's
    # grid (a (2r+1)^2 window, models/propagation.py): propagation then adds about 4 (2r)^2 / P of the
    # correlation instead of doubling it. 0 = every lent position (the non-local read)
    propagate_window: int = 0
    # inference calibration (tools/chroma_gain.py): the output ab is multiplied by this factor, chosen
    # on held-out training sequences; 1.0 = the network's output as trained (training presets keep 1.0)
    chroma_gain: float = 1.0
    num_res_blocks: int = 3
    num_ct_blocks: int = 3  # CNN-Transformer blocks augmenting R_high
    corr_heads: int = 6  # attention heads in the correspondence subnet
    # Transformer branch / linkage
    token_dim: int = 192  # D, divisible by corr_heads and heads
    token_pool: int = 2  # token grid = (h8 / token_pool) x (w8 / token_pool)
    ffn_ratio: float = 2.0
    memory_grid: tuple[int, int] = (8, 16)  # linkage memory slots = product, fixed
    # Colorization subnet
    heads: int = 4
    color_channels: tuple[int, int, int] = (64, 128, 256)
    color_ct_blocks: int = 2
    color_scale: int = 1  # the colorization subnet runs at H/color_scale; its ab is up-sampled back
    # Blocks of frames
    block_size: int = 3  # N at inference
    train_block_size: int = 2  # N in training
    # Ablations (paper Table 2): real code paths
    use_transformer: bool = True
    use_linkage: bool = True
    double_head: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise RefcolorError(f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.color_scale not in (1, 2, 4):
            raise RefcolorError("color_scale must be 1, 2 or 4")
        if self.nonlocal_stride not in (4, 8):
            raise RefcolorError("nonlocal_stride must be 4 or 8")
        for h in (self.corr_heads, self.heads):
            if self.token_dim % h:
                raise RefcolorError(f"token_dim {self.token_dim} is not divisible by {h} heads")
        lo, hi = self.tau_range
        if self.learn_tau and not 0 < lo < self.tau < hi:
            raise RefcolorError(f"tau {self.tau} must lie inside tau_range ({lo}, {hi})")
        if not (isinstance(self.propagate_stride, int) and 1 <= self.propagate_stride <= 4):
            raise RefcolorError(f"propagate_stride {self.propagate_stride} must be an integer in 1-4")
        if not (isinstance(self.propagate_window, int) and 0 <= self.propagate_window <= 32):
            raise RefcolorError(f"propagate_window {self.propagate_window} must be an integer in 0-32")
        if self.propagate_window and self.propagate_stride != 1:
            raise RefcolorError("propagate_window needs propagate_stride 1 (the window is on the full grid)")
        if not 0.5 <= self.chroma_gain <= 2.0:
            raise RefcolorError(f"chroma_gain {self.chroma_gain} must lie in [0.5, 2]")
        if self.key_mix and not 0 < self.key_mix_init < 1:
            raise RefcolorError("key_mix_init must lie in (0, 1)")
        if (self.key_mix or self.key_proj_hidden) and not self.raw_keys:
            raise RefcolorError("key_mix and key_proj_hidden need raw_keys=True")
        if self.use_linkage and not self.use_transformer:
            # The linkage memory reads and writes Transformer-branch tokens (Eq. 6-7):
            # without that branch there is nothing to link (Table 2 removes both together).
            raise RefcolorError("use_linkage=True needs use_transformer=True")

    @property
    def memory_slots(self) -> int:
        return self.memory_grid[0] * self.memory_grid[1]

    def replace(self, **overrides: Any) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise RefcolorError(f"unknown model config key(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **overrides)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise RefcolorError(f"model config is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise RefcolorError("model config must be a JSON object")
        for key in ("memory_grid", "color_channels", "tau_range"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        return ModelConfig().replace(**data)


# The training-free warp's named variants (models/warp.py WarpConfig overrides). ``warp-prop``: the
# previous block's last frame joins the reference (models/propagation.py), with the margin chosen
# on held-out training sequences (docs/MODEL-HISTORY.md, session 6).
WARP_PRESETS: dict[str, dict[str, Any]] = {"warp": {}, "warp-prop": {"propagate_bias": 0.05}}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # Same architecture, smaller: offline EfficientNet-Lite0 backbone, narrower layers and
    # the fusion and correlation on the h8 grid (4x fewer positions on both sides -> 16x
    # cheaper correlation) and the colorization subnet at half resolution (chroma is smooth).
    "lite": dict(
        preset="lite",
        backbone="efficientnet_lite0",
        feat_channels=128,
        nonlocal_channels=64,
        nonlocal_stride=8,
        token_dim=96,
        token_pool=2,
        memory_grid=(6, 12),
        color_channels=(24, 48, 96),
        color_ct_blocks=1,
        color_scale=2,
        raw_keys=True,
        key_mix=True,
        key_proj_hidden=128,
        learn_tau=True,
        # Off, by the paper's Table 2 on our trained weights (davis16-dev, docs/MODEL.md): removing
        # head 2 changed PSNR by +0.02 dB, colour -0.1 %, WE +0.1 %; removing the correspondence
        # CNN-Transformer blocks -0.05 dB, +0.7 % colour, +0.2 % WE: neither earns its place (0.1 dB,
        # 3 % WE or 3 % colour), and together they cost ~15 % of the network's CPU time. The
        # linkage tokens and the colorization subnet's own CNN-Transformer block stay. The paper's
        # full set: the "paper" preset, or ``double_head=True, num_ct_blocks=3``.
        double_head=False,
        num_ct_blocks=0,
    ),
}


def round_size(side: float) -> int:
    """``side`` rounded to the nearest multiple of 8, at least 16: a side the network takes."""
    return max(16, int(round(side / 8)) * 8)


def check_size(h: int, w: int, what: str = "working size") -> None:
    """Refuse a size the network cannot take. Multiples of 8 keep every stride-2 level exact, so
    token grids and skips line up."""
    if h % 8 or w % 8 or h < 16 or w < 16:
        raise RefcolorError(f"{what} {h}x{w} must be multiples of 8 and at least 16x16")


def get_config(preset: str, **overrides: Any) -> ModelConfig:
    """Config of a named preset with optional overrides, e.g. ``get_config("lite", use_linkage=False)``."""
    if preset not in PRESETS:
        raise RefcolorError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig().replace(**{**PRESETS[preset], **overrides})
