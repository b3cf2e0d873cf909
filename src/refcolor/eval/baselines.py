"""Colorization methods evaluated side by side: classic baselines and refcolor models.

Every method has one interface, stream-friendly (a generator over frames)::

    method.colorize_sequence(gray_frames, reference_rgb) -> Iterator[H,W,3 uint8]

``gray_frames`` is an iterable of ``H,W,3`` uint8 RGB frames (a gray video: only their CIELAB
L is used), ``reference_rgb`` an ``H',W',3`` uint8 color image. Every output frame keeps its
input's L (up to the gamut clipping of Lab -> RGB and uint8 rounding); only chroma is chosen.
All color work is CIELAB (kornia, D65) like the rest of refcolor.

* ``gray``: no color, ``ab = 0``.
* ``global transfer``: Reinhard et al. 2001, "Color transfer between images". Reinhard matches
  per-channel means and standard deviations: ``x' = sigma_ref / sigma_tgt * (x - mu_tgt) + mu_ref``.
  A gray target has ``ab = 0`` everywhere, so ``mu_tgt = sigma_tgt = 0`` and the scaled term is
  identically zero (its limit): the transferred chroma is the reference's mean ``ab`` at every
  pixel. Reinhard's paper has no gray-target variant that matches chroma by luminance (that is
  precisely Welsh et al.'s contribution, below), so nothing else is added. Two deliberate
  departures: CIELAB instead of Ruderman's l-alpha-beta (the protocol's color space), and the
  target's own L is kept instead of also matching L statistics (a colorization must not change
  luminance; PSNR would otherwise mostly measure the L shift).
* ``welsh``: Welsh, Ashikhmin & Mueller 2002, "Transferring color to greyscale images", global
  matching without swatches: the reference L is remapped linearly to the target's L mean and
  standard deviation (per frame); about ``samples`` reference pixels are drawn by jittered
  sampling (one random pixel per cell of a regular grid, fixed seed); each target pixel takes the
  ``ab`` of the sample minimising ``w (L_t - L_s)^2 + (1 - w) (sd_t - sd_s)^2`` with ``sd`` the
  standard deviation of L in a ``window x window`` neighbourhood (Welsh's 50/50 weighting, 5x5).
  Vectorised in torch: one 82944 x ~200 distance matrix per 216x384 frame.
* models (``warp``, a preset, a ``.safetensors`` checkpoint): run through
  ``refcolor.inference.Colorizer`` in blocks of ``block_size`` frames, memory reset per sequence.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np
import torch

from .. import color
from ..color import lab_to_rgb, rgb_to_lab, tensor_to_uint8, uint8_to_tensor
from ..errors import RefcolorError

__all__ = ["Method", "GrayMethod", "GlobalTransfer", "WelshTransfer", "ModelMethod", "BASELINE_NAMES",
           "build_method", "ModelSpec", "parse_model_spec", "rgb_to_lab_np", "lab_to_rgb_np", "gray_from_rgb", "one_thread"]

BASELINE_NAMES = ("gray", "global transfer", "welsh", "warp")
_ALIASES = {"gray": "gray", "grey": "gray", "global transfer": "global transfer", "global": "global transfer",
            "reinhard": "global transfer", "welsh": "welsh"}


class Method(Protocol):
    """What the runner needs of a colorization method."""

    name: str  # label in reports
    kind: str  # "baseline" or "model"

    def colorize_sequence(self, gray_frames: Iterable[np.ndarray], reference_rgb: np.ndarray) -> Iterator[np.ndarray]:
        """Gray frames (H,W,3 uint8) -> colorized frames (H,W,3 uint8), one by one."""
        ...


# ------------------------------------------------------------------------------- color helpers

@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored after).

    The baselines' tensors are one frame each: threads gain little on them, and on a machine whose
    cores are busy with other jobs OpenMP's waiting makes each small op 10-20x slower.
    """
    old = torch.get_num_threads()
    if old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def rgb_to_lab_np(rgb: np.ndarray) -> np.ndarray:
    """H,W,3 (or N,H,W,3) uint8 RGB -> float32 CIELAB of the same layout (L 0-100)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3 or rgb.ndim not in (3, 4):
        raise RefcolorError(f"expected H,W,3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    with one_thread():
        lab = rgb_to_lab(uint8_to_tensor(rgb)).permute(0, 2, 3, 1).numpy()
    return lab[0] if rgb.ndim == 3 else lab


def lab_to_rgb_np(l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L (H,W) and ab (H,W,2) float arrays -> H,W,3 uint8 RGB (out-of-gamut values clipped)."""
    lab = np.concatenate([np.asarray(l, np.float32)[..., None], np.asarray(ab, np.float32)], axis=-1)
    t = torch.from_numpy(np.ascontiguousarray(lab)).permute(2, 0, 1)[None]
    with one_thread():
        return tensor_to_uint8(lab_to_rgb(t))[0]


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """The protocol's gray input (``color.gray_from_rgb``), on one thread."""
    with one_thread():
        return color.gray_from_rgb(rgb)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise RefcolorError(f"a frame must be H,W,3 uint8 RGB, got {frame.dtype} {frame.shape}")
    return frame


# ------------------------------------------------------------------------------------ baselines

class GrayMethod:
    """No color: every output is the input's L with ``ab = 0``."""

    name = "gray"
    kind = "baseline"

    def colorize_sequence(self, gray_frames: Iterable[np.ndarray], reference_rgb: np.ndarray) -> Iterator[np.ndarray]:
        for frame in gray_frames:
            yield gray_from_rgb(_check_frame(frame))


class GlobalTransfer:
    """Reinhard et al. 2001 on a gray target: the reference's mean ``ab`` everywhere, target L kept."""

    name = "global transfer"
    kind = "baseline"

    def colorize_sequence(self, gray_frames: Iterable[np.ndarray], reference_rgb: np.ndarray) -> Iterator[np.ndarray]:
        mean_ab = rgb_to_lab_np(_check_frame(reference_rgb))[..., 1:].reshape(-1, 2).mean(axis=0)
        for frame in gray_frames:
            l = rgb_to_lab_np(_check_frame(frame))[..., 0]
            yield lab_to_rgb_np(l, np.broadcast_to(mean_ab.astype(np.float32), l.shape + (2,)))


def local_std(l: np.ndarray, window: int = 5) -> np.ndarray:
    """Standard deviation of ``l`` (H,W float) in a ``window x window`` box (reflected borders)."""
    l = np.asarray(l, np.float32)
    mean = cv2.boxFilter(l, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(l * l, -1, (window, window), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(sq - mean * mean, 0.0))


def jittered_samples(h: int, w: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, one uniformly random pixel in each cell of a ~``samples``-cell grid."""
    gx = max(1, min(w, int(round(np.sqrt(samples * w / h)))))
    gy = max(1, min(h, int(round(samples / gx))))
    ys = np.linspace(0, h, gy + 1).astype(int)
    xs = np.linspace(0, w, gx + 1).astype(int)
    idx = []
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            if y1 > y0 and x1 > x0:
                idx.append(int(rng.integers(y0, y1)) * w + int(rng.integers(x0, x1)))
    return np.asarray(idx, dtype=np.int64)


class WelshTransfer:
    """Welsh et al. 2002 global color transfer to a gray image (see the module docstring)."""

    name = "welsh"
    kind = "baseline"

    def __init__(self, samples: int = 200, window: int = 5, weight: float = 0.5, seed: int = 0,
                 chunk: int = 32768) -> None:
        if samples < 1 or window < 1 or not 0.0 <= weight <= 1.0:
            raise RefcolorError("welsh: samples >= 1, window >= 1 and 0 <= weight <= 1 are required")
        self.samples, self.window, self.weight, self.seed, self.chunk = samples, window, weight, seed, chunk

    def prepare(self, reference_rgb: np.ndarray) -> dict[str, np.ndarray | float]:
        """Jittered samples of the reference: their L, local std of L, ab; and L's mean and std."""
        lab = rgb_to_lab_np(_check_frame(reference_rgb))
        l = lab[..., 0]
        h, w = l.shape
        idx = jittered_samples(h, w, self.samples, np.random.default_rng(self.seed))
        return {"l": l.reshape(-1)[idx], "sd": local_std(l, self.window).reshape(-1)[idx],
                "ab": lab[..., 1:].reshape(-1, 2)[idx], "mu": float(l.mean()), "sigma": float(l.std())}

    def colorize_frame(self, frame: np.ndarray, ref: dict[str, np.ndarray | float]) -> np.ndarray:
        """One gray frame -> colorized H,W,3 uint8 (best-matching sample's ab per pixel)."""
        l = rgb_to_lab_np(_check_frame(frame))[..., 0]
        mu_t, sigma_t = float(l.mean()), float(l.std())
        scale = sigma_t / ref["sigma"] if ref["sigma"] > 1e-6 else 1.0
        # luminance remapping of the reference onto the target's statistics (Welsh sec. 2)
        s_l = torch.from_numpy(((ref["l"] - ref["mu"]) * scale + mu_t).astype(np.float32))
        s_sd = torch.from_numpy((ref["sd"] * scale).astype(np.float32))
        wl, ws = float(np.sqrt(self.weight)), float(np.sqrt(1.0 - self.weight))
        samples = torch.stack([s_l * wl, s_sd * ws], dim=1)  # S,2
        target = torch.from_numpy(np.stack([l.reshape(-1) * wl, local_std(l, self.window).reshape(-1) * ws], axis=1))
        best = torch.empty(target.shape[0], dtype=torch.long)
        with one_thread():
            for start in range(0, target.shape[0], self.chunk):
                best[start:start + self.chunk] = torch.cdist(target[start:start + self.chunk], samples).argmin(dim=1)
        ab = ref["ab"][best.numpy()].reshape(l.shape + (2,))
        return lab_to_rgb_np(l, ab)

    def colorize_sequence(self, gray_frames: Iterable[np.ndarray], reference_rgb: np.ndarray) -> Iterator[np.ndarray]:
        ref = self.prepare(reference_rgb)
        for frame in gray_frames:
            yield self.colorize_frame(frame, ref)


# --------------------------------------------------------------------------------------- models

class ModelMethod:
    """A refcolor model (``warp``, a preset, a checkpoint) run by ``Colorizer`` in blocks of N frames."""

    kind = "model"

    def __init__(self, spec: str | Path, *, device: str | torch.device = "auto", size: tuple[int, int] | None = None,
                 block_size: int | None = None, label: str | None = None) -> None:
        from ..inference import Colorizer

        self.spec = str(spec)  # as given, suffix included (report.json; components match on it)
        parsed = parse_model_spec(self.spec)
        self.colorizer = Colorizer(parsed.model, device=device, size=size, block_size=block_size,
                                   exact_rgb=parsed.exact_rgb)
        self.name = label or parsed.label

    @property
    def block_size(self) -> int:
        return self.colorizer.block_size

    @block_size.setter
    def block_size(self, n: int) -> None:
        if n < 1:
            raise RefcolorError("block size must be at least 1")
        self.colorizer.block_size = int(n)

    @property
    def device(self) -> torch.device:
        return self.colorizer.device

    def colorize_sequence(self, gray_frames: Iterable[np.ndarray], reference_rgb: np.ndarray) -> Iterator[np.ndarray]:
        self.colorizer.set_reference(_check_frame(reference_rgb))  # also resets the linkage memory
        block: list[np.ndarray] = []
        for frame in gray_frames:
            block.append(_check_frame(frame))
            if len(block) == self.block_size:
                yield from self.colorizer.step(np.stack(block))
                block = []
        if block:
            yield from self.colorizer.step(np.stack(block))


def model_label(spec: str) -> str:
    """Report label of a model spec: ``warp``, a preset name, or a checkpoint's file stem."""
    return Path(spec).stem if spec.endswith(".safetensors") else spec


#: ``<model>@<suffix>`` variants of a model and the words added to its label.
SPEC_SUFFIXES = {"exact-rgb": "exact RGB"}  # Lab -> RGB in kornia, as before OpenCV's (issue 18)


class ModelSpec(NamedTuple):
    model: str  # what ``Colorizer`` loads: ``warp``, a preset or a checkpoint path
    exact_rgb: bool
    label: str


def parse_model_spec(spec: str) -> ModelSpec:
    """``warp`` -> (warp, False, "warp"); ``warp@exact-rgb`` -> (warp, True, "warp (exact RGB)").

    An existing file, or a text whose last ``@`` is followed by a path, is a model spec as it stands."""
    text = spec.strip()
    model, at, suffix = text.rpartition("@")
    if not at or "/" in suffix or suffix.endswith(".safetensors") or Path(text).expanduser().exists():
        return ModelSpec(text, False, model_label(text))
    if suffix.lower() not in SPEC_SUFFIXES:
        known = ", ".join(f"@{s}" for s in SPEC_SUFFIXES)
        raise RefcolorError(f"unknown model suffix '@{suffix}' in {spec!r}; known: {known}")
    if not model:
        raise RefcolorError(f"model spec {spec!r} names no model before '@'")
    return ModelSpec(model, True, f"{model_label(model)} ({SPEC_SUFFIXES[suffix.lower()]})")


def build_method(name: str, *, device: str | torch.device = "auto", size: tuple[int, int] | None = None,
                 block_size: int | None = None) -> Method:
    """``gray``, ``global transfer`` (``global``, ``reinhard``), ``welsh``, ``warp`` or ``model:<spec>``;
    a model spec may end in ``@exact-rgb`` (``parse_model_spec``)."""
    key = name.strip().lower()
    if key in _ALIASES:
        return {"gray": GrayMethod, "global transfer": GlobalTransfer, "welsh": WelshTransfer}[_ALIASES[key]]()
    spec = name.strip()[len("model:"):] if key.startswith("model:") else name.strip()
    if not spec:
        raise RefcolorError(f"empty model spec in method {name!r}")
    return ModelMethod(spec, device=device, size=size, block_size=block_size)
