"""Image and video metrics on RGB uint8 frames (``H,W,3``, 0-255).

* ``psnr``: ``10 log10(255^2 / MSE)`` over all pixels and channels; equal images give
  ``float("inf")``. Averages over frames go through ``mean_psnr``, which caps each frame at
  ``PSNR_CAP`` = 100 dB so a single exact frame cannot make a video's mean infinite.
* ``ssim``: scikit-image's ``structural_similarity`` (``channel_axis=-1``, ``data_range=255``,
  its defaults otherwise: 7x7 uniform window, sample covariance), the mean over channels.
* ``colorfulness``: Hasler & Suesstrunk 2003.
* ``warp_error``: Lai et al. 2018 (raw value; reports multiply by ``WE_SCALE``).
* ``cdc``: color distribution consistency, Liu et al. (TCVC, 2021): Jensen-Shannon divergence of
  per-channel RGB histograms of frames ``t`` and ``t + k``, ``k`` in 1, 2, 4 (``cdc_steps``).
* LPIPS and FID live in ``refcolor.eval.perceptual`` and are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import RefcolorError
from ..flow import FlowCache, FlowEstimator, occlusion_mask, warp
from .perceptual import FIDMetric, LPIPSMetric, Unavailable

__all__ = ["PSNR_CAP", "WE_SCALE", "CDC_STEPS", "psnr", "mean_psnr", "ssim", "colorfulness", "warp_error",
           "channel_histograms", "js_divergence", "cdc_steps", "cdc",
           "FrameMetrics", "frame_metrics", "LPIPSMetric", "FIDMetric", "Unavailable"]

PSNR_CAP = 100.0  # dB; per-frame cap used by mean_psnr only
WE_SCALE = 1000.0  # warp error is reported as value x 1000 (E_warp x 10^-3 in the papers)
CDC_STEPS = (1, 2, 4)  # frame distances k of CDC, equally weighted (Liu et al.)


def _check_rgb(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise RefcolorError(f"{what} must be an H,W,3 uint8 RGB array, got {x.dtype} {x.shape}")
    return x


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _check_rgb(pred, "prediction"), _check_rgb(gt, "ground truth")
    if pred.shape != gt.shape:
        raise RefcolorError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    return pred, gt


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two RGB uint8 images (data range 255); ``inf`` when they are equal."""
    pred, gt = _check_pair(pred, gt)
    mse = float(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def mean_psnr(values: Sequence[float]) -> float:
    """Mean of per-frame PSNRs, each capped at ``PSNR_CAP`` (so equal frames count as 100 dB)."""
    if len(values) == 0:
        raise RefcolorError("mean_psnr needs at least one value")
    return float(np.mean(np.minimum(np.asarray(values, dtype=np.float64), PSNR_CAP)))


def ssim(pred: np.ndarray, gt: np.ndarray, **kwargs) -> float:
    """SSIM of two RGB uint8 images via ``skimage.metrics.structural_similarity``.

    ``channel_axis=-1`` and ``data_range=255``; ``kwargs`` go to scikit-image (e.g.
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` for Wang et al.'s setting).
    """
    from skimage.metrics import structural_similarity

    pred, gt = _check_pair(pred, gt)
    try:
        return float(structural_similarity(gt, pred, channel_axis=-1, data_range=255, **kwargs))
    except ValueError as err:  # e.g. an image smaller than the window
        raise RefcolorError(f"ssim: {err}") from err


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk 2003 colorfulness of an RGB image with values in 0-255.

    ``rg = R - G``, ``yb = (R + G) / 2 - B``;
    ``C = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)`` (population std).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise RefcolorError(f"colorfulness needs an H,W,3 RGB array, got {rgb.shape}")
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def warp_error(frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray], flow: FlowEstimator,
               cache: FlowCache | None = None, source: str | Path | None = None,
               indices: Sequence[int] | None = None) -> float:
    """Warp error of an output video, Lai et al. 2018 (``evaluate_WarpError.py``), raw value.

    Flows come from the ground-truth frames: ``F_t = flow(G_{t-1}, G_t)`` (forward) and
    ``B_t = flow(G_t, G_{t-1})`` (backward). On the grid of frame ``t-1``:

        M_t = occlusion_mask(F_t, B_t, motion_boundary=True)    (1 = valid)
        W_t = warp(O_t, F_t)                                     (O_t(p + F_t(p)) ~ O_{t-1}(p))
        E_t = sum_{p,c} M_t(p) * (W_t(p,c) - O_{t-1}(p,c))^2 / (C * sum_p M_t(p))

    with ``O`` the output frames as RGB in [0, 1], ``C = 3`` (Lai reads the occlusion PNG as
    3 channels, so his divisor is the mask summed over channels: a masked per-element mean);
    when no pixel is valid ``E_t = 0`` (Lai's fallback divisor ``H*W*C`` over a zero sum).
    The result is the mean of ``E_t`` over the ``T - 1`` pairs; multiply by ``WE_SCALE`` to report.
    This mirrors Lai's code (mask and warp on frame ``t-1``, his FlowNet2 replaced by ``flow``);
    ``occlusion_mask`` also counts pixels whose match leaves the frame as occluded.

    ``cache`` (optional) stores the flows; with ``source`` (the ground-truth video file or folder)
    and ``indices`` (frame numbers in it, default ``0..T-1``) entries are keyed by file, else by
    pixel hashes.
    """
    if len(frames) != len(gt_frames):
        raise RefcolorError(f"warp error: {len(frames)} output frames but {len(gt_frames)} ground-truth frames")
    if len(frames) < 2:
        raise RefcolorError("warp error needs at least 2 frames")
    idx = list(range(len(frames))) if indices is None else [int(i) for i in indices]
    if len(idx) != len(frames):
        raise RefcolorError(f"warp error: {len(idx)} indices for {len(frames)} frames")

    def est(a: np.ndarray, b: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
        if cache is None:
            return flow(a, b)
        return cache.flow(flow, a, b, source=source, pair=pair if source is not None else None)

    errs = []
    prev = _check_pair(frames[0], gt_frames[0])
    for t in range(1, len(frames)):
        cur = _check_pair(frames[t], gt_frames[t])
        if cur[0].shape != prev[0].shape:
            raise RefcolorError(f"warp error: frame {t} is {cur[0].shape}, frame {t - 1} is {prev[0].shape}")
        fw = est(prev[1], cur[1], (idx[t - 1], idx[t]))
        bw = est(cur[1], prev[1], (idx[t], idx[t - 1]))
        mask = occlusion_mask(fw, bw, motion_boundary=True)
        o_prev = prev[0].astype(np.float32) / 255.0
        warped = warp(cur[0].astype(np.float32) / 255.0, fw)
        n = float(mask.sum()) * o_prev.shape[2]
        sq = float(np.sum(mask[..., None] * (warped - o_prev) ** 2, dtype=np.float64))
        errs.append(sq / n if n > 0 else 0.0)
        prev = cur
    return float(np.mean(errs))


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """3,256 float64: the histogram of each RGB channel of an ``H,W,3`` uint8 frame, summing to 1."""
    rgb = _check_rgb(rgb, "frame")
    flat = rgb.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.float64) / flat.shape[0]


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log, so at most ln 2) of distributions on the last axis.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``; terms with zero mass are 0.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        ratio = np.divide(a, m, out=np.ones_like(a), where=a > 0)
        return np.sum(a * np.log(ratio), axis=-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def cdc_steps(frames: Sequence[np.ndarray], steps: Sequence[int] = CDC_STEPS) -> dict[int, float]:
    """``k -> CDC_k``: the JS divergence of the channel histograms of frames ``t`` and ``t + k``, mean
    over the ``T - k`` pairs, then over the 3 channels. Steps with no pair (``k >= T``) are left out."""
    if len(frames) < 2:
        raise RefcolorError("CDC needs at least 2 frames")
    hist = np.stack([channel_histograms(f) for f in frames])  # T,3,256
    return {int(k): float(js_divergence(hist[:-k], hist[k:]).mean()) for k in steps if 0 < k < len(frames)}


def cdc(frames: Sequence[np.ndarray], steps: Sequence[int] = CDC_STEPS) -> float:
    """Color distribution consistency of a video (Liu et al., "Temporally consistent video
    colorization with deep feature propagation and self-regularization learning"; lower is steadier).

    The mean of ``cdc_steps`` over k = 1, 2, 4 with equal weights, as in the authors' evaluation
    (256-bin histogram per RGB channel normalised by the pixel count, JS divergence in nats). A clip
    shorter than 5 frames averages the steps it has. Per sequence; reports average over sequences.
    """
    per_step = cdc_steps(frames, steps)
    if not per_step:
        raise RefcolorError(f"CDC: no step of {tuple(steps)} fits in {len(frames)} frames")
    return float(np.mean(list(per_step.values())))


@dataclass
class FrameMetrics:
    """Per-frame curves of one video (``psnr`` may hold ``inf``; ``mean_psnr`` caps it)."""

    psnr: list[float] = field(default_factory=list)
    colorfulness: list[float] = field(default_factory=list)
    ssim: list[float] | None = None

    @property
    def mean_psnr(self) -> float:
        return mean_psnr(self.psnr)


def frame_metrics(frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray],
                  with_ssim: bool = False) -> FrameMetrics:
    """PSNR against the ground truth and colorfulness of the output, frame by frame."""
    if len(frames) != len(gt_frames):
        raise RefcolorError(f"{len(frames)} output frames but {len(gt_frames)} ground-truth frames")
    out = FrameMetrics(ssim=[] if with_ssim else None)
    for pred, gt in zip(frames, gt_frames):
        out.psnr.append(psnr(pred, gt))
        out.colorfulness.append(colorfulness(pred))
        if out.ssim is not None:
            out.ssim.append(ssim(pred, gt))
    return out
