"""Working-size budget: refuse, before any work, a size that the machine cannot run in time.

The non-local correlation compares every position of a frame's grid with every reference
position, so its work grows with the square of the pixel count: at ``--size 2160x3840`` the
``warp`` model's h/4 correlation is 518,400 x 518,400 positions x 176 channels, about 47,000
GMACs per frame (over an hour on this project's CPU). ``check_budget`` estimates, from the model's
grid strides and key channels, the work and the peak memory of one block at a working size and
raises one ``RefcolorError`` line with the estimate and the largest size of the same aspect ratio
that fits.

Thresholds (docs/ROBUSTNESS.md):
- memory: the estimate must stay within ``MEMORY_FRACTION`` of the memory available now
  (``MemAvailable`` of /proc/meminfo, else ``os.sysconf``; on CUDA the GPU's free memory);
- time, CPU only: the estimated seconds per frame must stay within ``REFCOLOR_MAX_SECONDS_PER_FRAME``
  (environment; default 60; 0 turns the time check off). The rates below were measured on this
  project's CPU (AMD EPYC 2.45 GHz, AVX2) with one torch thread and rounded down; each further
  thread is counted at half a thread. On CUDA only the memory is checked.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from .config import round_size
from .errors import RefcolorError

MEMORY_FRACTION = 0.75
DEFAULT_MAX_SECONDS_PER_FRAME = 60.0
# nonlocal_warp, one torch thread: 12-12.6 GMAC/s at 20,736 x 20,736 positions (K = 176-256);
# the softmax and value product cost about SOFTMAX_MACS multiply-adds per correlation entry.
CORR_GMACS_PER_S = 10.0
SOFTMAX_MACS = 48
# The rest of the network (convolutions, Transformers), one thread: 29 GMAC/s measured for paper.
CONV_GMACS_PER_S = 20.0
# MACs per working pixel outside the correlation (benchmarks/results/model_stats.json at 216x384,
# minus the correlation's share) and peak live bytes per working pixel per frame of a block outside
# the correlation (traced on tensors at 128x256 and 432x768), by model kind.
CONV_MACS_PER_PIXEL = {"warp": 5.6e3, "efficientnet_lite0": 5.4e4, "resnet101": 2.1e6}
BYTES_PER_PIXEL = {"warp": 150.0, "efficientnet_lite0": 180.0, "resnet101": 2200.0}
SAFETY = 1.5  # on the memory estimate: allocator slack, frames in flight


@dataclass(frozen=True)
class Head:
    stride: int  # the correlation grid is (h / stride) x (w / stride)
    channels: int  # key channels K


@dataclass(frozen=True)
class Estimate:
    gmacs: float  # per frame: correlation + the rest of the network
    seconds: float | None  # per frame on the CPU (None on CUDA)
    gigabytes: float  # peak extra memory of one block


def model_heads(model: nn.Module) -> tuple[list[Head], str] | None:
    """The correlation heads of a model and its kind, read from its config and backbone; None
    for a model this module does not know (no check is made then)."""
    from .models.network import RefColorNet
    from .models.warp import WarpModel

    if isinstance(model, WarpModel):
        return [Head(4, model.backbone.match_channels)], "warp"
    if isinstance(model, RefColorNet):
        cfg = model.cfg
        first = Head(4, model.backbone.match_channels + cfg.nonlocal_channels) if cfg.raw_keys \
            else Head(cfg.nonlocal_stride, cfg.nonlocal_channels)
        heads = [first] + ([Head(cfg.nonlocal_stride, cfg.nonlocal_channels)] if cfg.double_head else [])
        return heads, cfg.backbone
    return None


def lent_positions(model: nn.Module, p: int) -> float:
    """Positions that propagation adds to head 1's reference for each query (models/propagation.py):
    the lent frame's P / stride^2, or a window's halo of (8 + 2r)^2; 0 without propagation."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or getattr(cfg, "propagate_bias", -1.0) < 0:
        return 0.0
    window = getattr(cfg, "propagate_window", 0)
    if window:
        from .models.propagation import TILE

        return float((TILE + 2 * window) ** 2)
    return p / getattr(cfg, "propagate_stride", 1) ** 2


def _chunk() -> int:
    from .models.correspondence import nonlocal_warp

    return int(inspect.signature(nonlocal_warp).parameters["chunk"].default)


def estimate(model: nn.Module, size: tuple[int, int], ref_pixels: int | None = None, block: int = 3,
             device: torch.device = torch.device("cpu"), threads: int | None = None) -> Estimate | None:
    """Work and peak memory of one block of ``block`` frames at working ``size``; the references
    together hold ``ref_pixels`` working pixels (default: one reference of the working size)."""
    known = model_heads(model)
    if known is None:
        return None
    heads, kind = known
    h, w = size
    ref_pixels = ref_pixels or h * w
    corr_gmacs, corr_bytes, key_bytes = 0.0, 0.0, 0.0
    for i, head in enumerate(heads):
        p = math.ceil(h / head.stride) * math.ceil(w / head.stride)
        pr = ref_pixels / head.stride**2 + (lent_positions(model, p) if i == 0 else 0)
        corr_gmacs += p * pr * (head.channels + 2 + SOFTMAX_MACS) / 1e9
        corr_bytes = max(corr_bytes, 2 * min(_chunk(), p) * pr * 4)  # correlation + softmax of one chunk
        key_bytes += (block * p + pr) * head.channels * 4
    conv_gmacs = CONV_MACS_PER_PIXEL.get(kind, max(CONV_MACS_PER_PIXEL.values())) * h * w / 1e9
    act_bytes = BYTES_PER_PIXEL.get(kind, max(BYTES_PER_PIXEL.values())) * block * h * w
    seconds = None
    if device.type == "cpu":
        speed = 1 + 0.5 * (max(1, threads or torch.get_num_threads()) - 1)
        seconds = (corr_gmacs / CORR_GMACS_PER_S + conv_gmacs / CONV_GMACS_PER_S) / speed
    return Estimate(corr_gmacs + conv_gmacs, seconds, SAFETY * (corr_bytes + key_bytes + act_bytes) / 1e9)


def available_gigabytes(device: torch.device) -> float:
    """Memory available now: the GPU's free memory on CUDA; else MemAvailable (/proc/meminfo)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / 1e9
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (ValueError, OSError, AttributeError):
        return math.inf


def max_seconds_per_frame() -> float:
    text = os.environ.get("REFCOLOR_MAX_SECONDS_PER_FRAME", "")
    try:
        value = float(text) if text else DEFAULT_MAX_SECONDS_PER_FRAME
    except ValueError:
        raise RefcolorError(f"REFCOLOR_MAX_SECONDS_PER_FRAME={text!r} is not a number of seconds") from None
    return math.inf if value <= 0 else value


def _fits(e: Estimate, memory: float, seconds: float) -> bool:
    return e.gigabytes <= memory and (e.seconds is None or e.seconds <= seconds)


def check_budget(model: nn.Module, size: tuple[int, int], *, ref_pixels: int | None = None, block: int = 3,
                 device: torch.device = torch.device("cpu"), name: str = "the model") -> Estimate | None:
    """Raises one RefcolorError line when ``size`` does not fit this machine (see module doc)."""
    e = estimate(model, size, ref_pixels, block, device)
    if e is None:
        return None
    available = available_gigabytes(device)
    memory, seconds = MEMORY_FRACTION * available, max_seconds_per_frame()
    if _fits(e, memory, seconds):
        return e
    h, w = size
    refs = (ref_pixels or h * w) / (h * w)  # the references' pixels relative to the working size
    best = None
    for rows in range(16, h, 8):
        cols = round_size(w * rows / h)
        if not _fits(estimate(model, (rows, cols), int(refs * rows * cols), block, device), memory, seconds):
            break
        best = (rows, cols)
    what = []
    if e.seconds is not None and e.seconds > seconds:
        took = f"{e.seconds / 60:.0f} min" if e.seconds >= 120 else f"{e.seconds:.0f} s"
        what.append(f"about {took} per frame on this CPU ({e.gmacs:,.0f} GMACs per frame; "
                    f"limit {seconds:.0f} s, REFCOLOR_MAX_SECONDS_PER_FRAME)")
    if e.gigabytes > memory:
        what.append(f"about {e.gigabytes:.1f} GB of {'GPU ' if device.type == 'cuda' else ''}memory "
                    f"({available:.1f} GB available, {MEMORY_FRACTION:.0%} usable)")
    hint = f"the largest size of this aspect that fits is {best[0]}x{best[1]} (--size {best[0]}x{best[1]})" if best \
        else "no size of this aspect fits"
    raise RefcolorError(f"working size {h}x{w} is too large for {name} here: {' and '.join(what)}; {hint}")
