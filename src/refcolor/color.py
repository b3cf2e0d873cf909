"""CIELAB conversions (kornia, D65, sRGB) and the network's normalisation.

Network input ``l = L / 50 - 1``; chroma ``ab_n = ab / 110``; the output ``tanh`` gives ``ab_n``.
"""
from __future__ import annotations

import kornia.color
import numpy as np
import torch
from torch import Tensor

from .errors import RefcolorError
from .samples import uint16_to_uint8

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


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The evaluation protocol's gray input: CIELAB L kept, ab = 0 (H,W,3 or N,H,W,3 uint8 -> same).
    Training's subnet stage (train/subnet.py) feeds the network exactly this input too."""
    rgb = np.asarray(rgb)
    lab = rgb_to_lab(uint8_to_tensor(rgb))
    lab[:, 1:] = 0.0
    out = tensor_to_uint8(lab_to_rgb(lab))
    return out[0] if rgb.ndim == 3 else out


def as_rgb_uint8(frame: np.ndarray | Tensor) -> np.ndarray:
    """Gray (H,W or H,W,1), RGB or RGBA, uint8/uint16/float in [0,1] -> H,W,3 uint8."""
    arr = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # C,H,W tensor layout
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise RefcolorError(f"a frame must be H,W (gray) or H,W,3 (RGB); got shape {arr.shape}")
    if arr.dtype == np.uint16:
        arr = uint16_to_uint8(arr)
    elif arr.dtype.kind == "f":
        arr = (np.clip(arr, 0, 1) * 255.0).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise RefcolorError(f"unsupported frame dtype {arr.dtype}")
    arr = arr[..., :3]
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr
