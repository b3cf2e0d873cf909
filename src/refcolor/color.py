"""CIELAB conversions (kornia, D65, sRGB) and the network's normalisation.

Network input ``l = L / 50 - 1``; chroma ``ab_n = ab / 110``; the output ``tanh`` gives ``ab_n``.
"""
from __future__ import annotations

import kornia.color
import numpy as np
import torch
from torch import Tensor

AB_SCALE = 110.0


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """B,3,H,W RGB in [0, 1] -> B,3,H,W Lab (L in [0, 100], ab roughly in [-110, 110])."""
    return kornia.color.rgb_to_lab(rgb.clamp(0, 1))


def lab_to_rgb(lab: Tensor) -> Tensor:
    """B,3,H,W Lab -> B,3,H,W RGB in [0, 1] (clipped)."""
    return kornia.color.lab_to_rgb(lab, clip=True)


def normalize_lab(lab: Tensor) -> Tensor:
    """Lab -> network range: l in [-1, 1], ab / 110."""
    return torch.cat([lab[:, :1] / 50.0 - 1.0, lab[:, 1:] / AB_SCALE], dim=1)


def denormalize_lab(lab_n: Tensor) -> Tensor:
    return torch.cat([(lab_n[:, :1] + 1.0) * 50.0, lab_n[:, 1:] * AB_SCALE], dim=1)


def gray_rgb_from_l(l_n: Tensor) -> Tensor:
    """B,1,H,W normalised l -> B,3,H,W gray RGB in [0, 1] (what the backbone sees)."""
    lab = torch.cat([(l_n + 1.0) * 50.0, torch.zeros_like(l_n).repeat(1, 2, 1, 1)], dim=1)
    return lab_to_rgb(lab)


def uint8_to_tensor(rgb: np.ndarray) -> Tensor:
    """H,W,3 uint8 (or N,H,W,3) -> B,3,H,W float in [0, 1]."""
    rgb = np.ascontiguousarray(rgb)
    arr = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy())
    if arr.ndim == 3:
        arr = arr[None]
    return arr.permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_uint8(rgb: Tensor) -> np.ndarray:
    """B,3,H,W in [0, 1] -> B,H,W,3 uint8."""
    return (rgb.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
