"""Full-resolution color conversions of the pipeline: fast, and bit-identical to ``refcolor.color``.

At 1080p the kornia conversions on a whole block cost more than the ``lite`` network itself
(about 0.5 s per frame each way on one thread, see docs/PERFORMANCE.md), because each of their
twenty-odd element-wise steps streams a block-sized temporary through memory. Here:

* ``luminance``: a gray frame (R = G = B, what a black-and-white video decodes to) takes its
  CIELAB L from a 256-entry table computed once by ``rgb_to_lab`` itself; other frames go
  through ``rgb_to_lab`` a band of rows at a time.
* ``to_rgb_uint8``: chroma up-sampling, Lab -> RGB and the uint8 rounding, one frame and a band
  of ``ROWS`` rows at a time, so that every temporary stays in the CPU's cache.

``luminance`` equals ``rgb_to_lab(...)[:, :1]`` exactly (a gray frame's table lookup runs in
OpenCV: same table, same values). ``to_rgb_uint8`` on the CPU runs in OpenCV (``cv2.resize``,
``cv2.cvtColor`` on float32: about 4x faster than kornia's twenty-odd torch passes, issue 18) and
is not bit-identical to ``tensor_to_uint8(lab_to_rgb(...))``: OpenCV's constants and its sRGB
gamma (a spline table) differ in the last bits, so a channel value at a rounding boundary can
come out one step apart (at most 1; about 0.5 % of channel values for uniformly random Lab, 0.2 %
on smooth chroma). kornia clamps ``fz`` at 0 and OpenCV does not, so ``b`` is first limited to
where ``fz`` = 0 (same result as the clamp). ``exact=True`` keeps the kornia path, bit-identical
(tests/test_fast_paths.py). On a GPU the whole block is converted at once with kornia: memory
traffic is not its bottleneck.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .color import lab_to_rgb, rgb_to_lab

ROWS = 64  # rows per band: 64 x 1920 x 3 floats = 1.5 MB per temporary (L2/L3-sized)

_LUT: dict[torch.device, Tensor] = {}


def gray_lut(device: torch.device) -> Tensor:
    """256 floats: the CIELAB L of the gray pixel (v, v, v), v = 0..255, as ``rgb_to_lab`` computes it."""
    if device not in _LUT:
        ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, 3, 1, 256)
        _LUT[device] = rgb_to_lab(ramp.to(device).float().div_(255.0))[0, 0, 0].contiguous()
    return _LUT[device]


def is_gray(batch: np.ndarray) -> bool:
    """N,H,W,3 uint8: True when every pixel has R = G = B."""
    r = batch[..., 0]
    return bool(np.array_equal(r, batch[..., 1]) and np.array_equal(r, batch[..., 2]))


def _to_float(rgb_u8: np.ndarray, device: torch.device) -> Tensor:
    """N,h,W,3 uint8 -> N,3,h,W float in [0, 1] (as ``uint8_to_tensor``)."""
    arr = torch.from_numpy(np.ascontiguousarray(rgb_u8)).to(device)
    return arr.permute(0, 3, 1, 2).float().div_(255.0)


def luminance(batch: np.ndarray, device: torch.device) -> Tensor:
    """N,H,W,3 uint8 RGB -> N,1,H,W CIELAB L, equal to ``rgb_to_lab(uint8_to_tensor(batch))[:, :1]``."""
    device = torch.device(device)
    if is_gray(batch) and device.type == "cpu":  # a table lookup in OpenCV: 10x faster than torch's gather
        import cv2

        lut = gray_lut(device).numpy()
        # allocated by NumPy, which asks for huge pages on large blocks (torch's allocator does not); heap.py
        out = torch.from_numpy(np.empty((batch.shape[0], 1, *batch.shape[1:3]), dtype=np.float32))
        for frame, plane in zip(batch, out.numpy()):
            cv2.LUT(np.ascontiguousarray(frame[..., 0]), lut, dst=plane[0])  # in place: no frame-sized temporary
        return out
    if is_gray(batch):
        index = torch.from_numpy(np.ascontiguousarray(batch[..., 0])).to(device).long()
        return gray_lut(device)[index][:, None]
    if device.type != "cpu":
        return rgb_to_lab(_to_float(batch, device))[:, :1]
    n, h, w, _ = batch.shape
    out = torch.empty(n, 1, h, w)
    for i in range(n):
        for start in range(0, h, ROWS):
            band = _to_float(batch[i : i + 1, start : start + ROWS], device)
            out[i : i + 1, :, start : start + ROWS] = rgb_to_lab(band)[:, :1]
    return out


def guided_upsample(ab: Tensor, guide_l: Tensor) -> Tensor:
    """Edge-aware up-sampling of chroma: bilinear, then a guided filter steered by full-res L.

    ab: B,2,h,w; guide_l: B,1,H,W in [0, 1] -> B,2,H,W. The radius follows the scale factor so
    that the filter spans about one low-resolution pixel.
    """
    import kornia.filters

    up = F.interpolate(ab, size=guide_l.shape[-2:], mode="bilinear", align_corners=False)
    scale = guide_l.shape[-2] / ab.shape[-2]
    if scale <= 1.5:
        return up
    # the filter's reflect padding needs its radius below the frame's shorter side
    radius = min(int(math.ceil(scale)), min(guide_l.shape[-2:]) - 1)
    if radius < 1:
        return up
    return kornia.filters.guided_blur(guide_l, up, 2 * radius + 1, eps=1e-3)


def _upsample(ab: Tensor, lum: Tensor, method: str) -> Tensor:
    """ab B,2,h,w -> B,2,H,W at the size of ``lum`` (B,1,H,W)."""
    if ab.shape[-2:] == lum.shape[-2:]:
        return ab
    if method == "guided":
        return guided_upsample(ab, lum / 100.0)
    return F.interpolate(ab, size=lum.shape[-2:], mode="bilinear", align_corners=False)


def _rgb_u8(lab: Tensor) -> Tensor:
    """B,3,h,W Lab -> B,h,W,3 uint8 (as ``tensor_to_uint8(lab_to_rgb(lab))``)."""
    return (lab_to_rgb(lab).clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)


def _lab_to_rgb_cv2(l: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """H,W float32 L, a, b -> ``out`` (H,W,3 uint8), in bands of ``ROWS`` rows (OpenCV)."""
    import cv2

    for start in range(0, l.shape[0], ROWS):
        rows = slice(start, start + ROWS)
        # kornia clamps fz = (L + 16) / 116 - b / 200 at 0; OpenCV does not: limit b to fz >= 0 instead
        b_max = l[rows] + np.float32(16.0)
        np.multiply(b_max, np.float32(200.0 / 116.0), out=b_max)
        np.minimum(b[rows], b_max, out=b_max)
        rgb = cv2.cvtColor(cv2.merge([l[rows], a[rows], b_max]), cv2.COLOR_Lab2RGB)  # float32 in [0, 1]
        cv2.convertScaleAbs(rgb, out[rows], alpha=255.0)  # x 255, rounded half to even, as torch's round_


_scratch = threading.local()


def _planes(h: int, w: int) -> np.ndarray:
    """2,H,W float32 scratch of this thread, kept between calls (one per thread: the encoder thread's)."""
    planes = getattr(_scratch, "planes", None)
    if planes is None or planes.shape != (2, h, w):
        planes = _scratch.planes = np.empty((2, h, w), dtype=np.float32)
    return planes


def to_rgb_uint8(lum: Tensor, ab: Tensor, upsample: str = "bilinear", exact: bool = False) -> np.ndarray:
    """Full-resolution L (N,1,H,W) + chroma at the working size (N,2,h,w) -> N,H,W,3 uint8 RGB.

    ``tensor_to_uint8(lab_to_rgb(cat([lum, up(ab)])))`` with ``up`` the bilinear (or guided)
    up-sampling of ``inference.Colorizer``: exactly with ``exact=True`` or on a GPU, else (the
    CPU's default) in OpenCV, within 1 per channel value (module docstring).
    """
    if lum.device.type != "cpu":
        lab = torch.cat([lum, _upsample(ab, lum, upsample)], dim=1)
        return _rgb_u8(lab).cpu().numpy()
    if not exact:
        import cv2

        n, _, h, w = lum.shape
        out = np.empty((n, h, w, 3), dtype=np.uint8)
        planes = _planes(h, w)  # a and b at full resolution, reused: no frame-sized churn per block (heap.py)
        for i in range(n):
            if upsample == "guided" or ab.shape[-2:] == lum.shape[-2:]:
                full = _upsample(ab[i : i + 1], lum[i : i + 1], upsample)[0].float().contiguous().numpy()
            else:  # bilinear, half-pixel centres: torch's align_corners=False
                full = [cv2.resize(np.ascontiguousarray(c), (w, h), dst=plane, interpolation=cv2.INTER_LINEAR)
                        for c, plane in zip(ab[i].float().numpy(), planes)]
            _lab_to_rgb_cv2(np.ascontiguousarray(lum[i, 0].float().numpy()), full[0], full[1], out[i])
        return out
    n, _, h, w = lum.shape
    out = torch.empty(n, h, w, 3, dtype=torch.uint8)
    for i in range(n):
        full = _upsample(ab[i : i + 1], lum[i : i + 1], upsample)
        for start in range(0, h, ROWS):
            rows = slice(start, start + ROWS)
            out[i, rows] = _rgb_u8(torch.cat([lum[i : i + 1, :, rows], full[:, :, rows]], dim=1))[0]
    return out.numpy()
