"""Streaming colorization: ``Colorizer`` (frames in memory) and ``colorize`` (files).

Blocks of N frames flow decoder -> network -> encoder; the reference is encoded once
and only the fixed-size linkage memory is carried between blocks, so memory does not
grow with the video's length. The network works at a working size; its chroma is
up-sampled to the input's resolution and joined with the input's own full-resolution
L, so the output's L is the input's L.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .color import AB_SCALE, as_rgb_uint8, normalize_lab, rgb_to_lab, uint8_to_tensor
from .config import round_size
from .convert import luminance, to_rgb_uint8
from .cpu_math import denormals_flushed
from .errors import RefcolorError

DEFAULT_ROWS = 216
MIN_REFERENCE_CHROMA = 2.0  # mean |ab| below this: the "color" reference is gray


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RefcolorError("--device cuda was asked for but no CUDA GPU is available")
    if str(device) not in ("cpu",) and not str(device).startswith("cuda"):
        raise RefcolorError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def working_size(height: int, width: int, rows: int = DEFAULT_ROWS) -> tuple[int, int]:
    """Default working size: ``rows`` rows, width from the aspect ratio, both multiples of 8."""
    rows = round_size(rows)
    return rows, round_size(width * rows / height)


def parse_size(text: str) -> tuple[int, int]:
    """'216x384' -> (216, 384); sides rounded to multiples of 8."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RefcolorError(f"malformed size {text!r}; expected HxW, e.g. 216x384") from None
    if h < 16 or w < 16 or h > 4320 or w > 7680:
        raise RefcolorError(f"size {text!r} out of range (16..4320 x 16..7680)")
    return round_size(h), round_size(w)


class Colorizer:
    """Colorizes frames held in memory, one block at a time.

    >>> c = Colorizer("warp")
    >>> c.set_reference(reference_rgb)            # H,W,3 uint8 color photo (or several)
    >>> out = c.step(frames)                       # N,H,W(,3) frames -> N,H,W,3 uint8 RGB

    Frames keep their resolution: the network runs at ``size`` (default 216 rows) and only its
    chroma is up-sampled. ``reset_memory()`` starts a new shot.

    Speed options (docs/PERFORMANCE.md): ``backend="onnx"`` runs the network's ``step`` in ONNX
    Runtime (CPU; faster here); ``compile`` wraps it in ``torch.compile`` (a slow first block
    per block shape, then faster); ``amp`` ("bf16" or "fp16", CUDA only) runs it under autocast. ``timings`` adds up the seconds spent per stage
    (to_lab, model, to_rgb). ``flush_denormals`` (on by default with the PyTorch backend on the
    CPU): the network runs with denormal floats flushed to zero on the calling thread and all its
    intra-op threads, set back after each block (cpu_math.py: same output, faster softmax).
    ``exact_rgb``: Lab -> RGB in kornia, bit-identical to the pre-OpenCV path (to evaluate it; convert.py).
    """

    reference_fit = "height"  # how references are scaled: ``reference_size``'s ``fit``

    def __init__(
        self,
        model: str | Path | nn.Module = "default",
        *,
        device: str | torch.device = "auto",
        size: tuple[int, int] | None = None,
        block_size: int | None = None,
        upsample: str = "bilinear",
        compile: bool = False,
        amp: str | None = None,
        backend: str = "torch",
        exact_rgb: bool = False,
    ) -> None:
        from .checkpoint import load_model

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval() if isinstance(model, nn.Module) else load_model(model, self.device)
        self.block_size = block_size or getattr(self.model.cfg, "block_size", 3)
        if self.block_size < 1:
            raise RefcolorError("block size must be at least 1")
        if upsample not in ("guided", "bilinear"):
            raise RefcolorError(f"unknown upsampling {upsample!r}; use guided or bilinear")
        self.upsample = upsample
        self.exact_rgb = bool(exact_rgb)
        if amp not in (None, "bf16", "fp16"):
            raise RefcolorError(f"unknown --amp {amp!r}; use bf16 or fp16")
        if amp is not None and self.device.type != "cuda":
            raise RefcolorError("--amp (autocast) is for CUDA only; on the CPU it would be slower")
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        if backend not in ("torch", "onnx"):
            raise RefcolorError(f"unknown backend {backend!r}; use torch or onnx")
        if backend == "onnx" and (self.device.type != "cpu" or compile or amp):
            raise RefcolorError("--backend onnx runs on the CPU, without --compile or --amp")
        if backend == "onnx":
            from .onnx_backend import OnnxStep

            self._step = OnnxStep(self.model)
        else:
            self._step = torch.compile(self.model.step) if compile else self.model.step
        self.timings = {"to_lab": 0.0, "model": 0.0, "to_rgb": 0.0}
        self.flush_denormals = self.device.type == "cpu" and backend == "torch"
        self.size = size
        if size is not None:
            self._check_budget()  # a size that cannot run on this machine fails here, at once
        self._reference_images: list[np.ndarray] = []
        self._ref_state = None
        self._ref_key: tuple = ()
        self._ref_cache: dict[tuple, object] = {}
        self.memory = None

    @property
    def model_name(self) -> str:
        return getattr(self.model.cfg, "preset", type(self.model).__name__)

    def _check_budget(self, ref_pixels: int | None = None) -> None:
        """One-line RefcolorError when the working size does not fit this machine (budget.py)."""
        from .budget import check_budget

        name = getattr(getattr(self.model, "cfg", None), "preset", type(self.model).__name__)
        check_budget(self.model, tuple(self.size), ref_pixels=ref_pixels, block=self.block_size,
                     device=self.device, name=f"model {name}")

    def set_reference(self, references: np.ndarray | Sequence[np.ndarray]) -> None:
        """One color reference (H,W,3) or several, of any shapes; each is encoded once at its own
        aspect ratio and the working size's height (``reference_size``)."""
        refs = [references] if isinstance(references, np.ndarray) and references.ndim == 3 else list(references)
        if not refs:
            raise RefcolorError("at least one color reference is needed")
        self._reference_images = [check_color_reference(as_rgb_uint8(r)) for r in refs]
        # Encoded states are cached per set of references, so switching back to the reference
        # of an earlier shot does not encode it again.
        self._ref_key = tuple(hashlib.sha1(r.tobytes()).hexdigest() + str(r.shape) for r in self._reference_images)
        self._ref_state = self._ref_cache.get(self._ref_key)
        self.reset_memory()

    def reset_memory(self) -> None:
        self.memory = self.model.init_memory()

    def restore_memory(self, memory) -> None:
        """Continue from the linkage memory an interrupted run saved (``resume``), or None."""
        if isinstance(memory, dict):  # linkage tokens and/or what propagation lends (models/network.py)
            self.memory = {k: v.to(self.device) for k, v in memory.items()}
        else:
            self.memory = None if memory is None else memory.to(self.device)

    @torch.inference_mode()
    def _encode_references(self) -> None:
        from .models.network import RefState

        h, w = self.size
        sizes = [reference_size(*ref.shape[:2], h, w, self.reference_fit) for ref in self._reference_images]
        if len(sizes) > 1 or sizes[0] != (h, w):
            self._check_budget(sum(rh * rw for rh, rw in sizes))
        states = []
        for ref, ref_size in zip(self._reference_images, sizes):
            # Each reference keeps its own aspect ratio (at the frames' height, reference_size): the
            # correlation is over reference positions, which need not have the frames' shape.
            rgb = F.interpolate(uint8_to_tensor(ref).to(self.device), size=ref_size, mode="area")
            state = self.model.encode_reference(normalize_lab(rgb_to_lab(rgb)))
            if ref_size != (h, w):  # the colorization subnet's lab input has the frames' shape
                state.lab = F.interpolate(state.lab, size=(h, w), mode="area")
            states.append(state)
        self._ref_state = states[0] if len(states) == 1 else RefState.concat(states)
        self._ref_cache[self._ref_key] = self._ref_state

    def step(self, frames: np.ndarray | Tensor | Sequence[np.ndarray]) -> np.ndarray:
        """A block of frames (N,H,W gray or N,H,W,3 RGB, or a list) -> N,H,W,3 uint8 RGB."""
        return self.infer(frames)()

    @torch.inference_mode()
    def infer(self, frames: np.ndarray | Tensor | Sequence[np.ndarray]) -> Callable[[], np.ndarray]:
        """Runs the network on a block now; returns the rest of ``step`` as a function.

        The function up-samples the chroma and converts Lab to RGB at full resolution; the
        pipeline calls it in its encoder thread, beside the network's next block.
        """
        if isinstance(frames, (np.ndarray, Tensor)):
            single = frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] in (1, 3, 4))
            frames = [frames] if single else list(frames)
        batch = np.stack([as_rgb_uint8(f) for f in frames])
        if not self._reference_images:
            raise RefcolorError("call set_reference() before step()")
        full_h, full_w = batch.shape[1:3]
        if self.size is None:
            self.size = working_size(full_h, full_w)
            self._check_budget()
        if self._ref_state is None:
            self._encode_references()
        start = time.perf_counter()
        lum = luminance(batch, self.device)  # N,1,H,W full-resolution L, kept for the output
        l_work = F.interpolate(lum, size=self.size, mode="area") / 50.0 - 1.0
        model_start = time.perf_counter()
        autocast = torch.autocast("cuda", dtype=self.amp) if self.amp is not None else contextlib.nullcontext()
        out = []
        with autocast, denormals_flushed(self.flush_denormals):
            for first in range(0, len(batch), self.block_size):
                block = l_work[first : first + self.block_size]
                ab_n, self.memory = self._step(block[None], self._ref_state, self.memory)
                out.append(ab_n[0].float())
        ab = torch.cat(out) * AB_SCALE  # N,2,h,w
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        end = time.perf_counter()
        self.timings["to_lab"] += model_start - start
        self.timings["model"] += end - model_start
        return lambda: self._finish(lum, ab)

    def _finish(self, lum: Tensor, ab: Tensor) -> np.ndarray:
        start = time.perf_counter()
        with torch.inference_mode():
            rgb = to_rgb_uint8(lum, ab, self.upsample, exact=self.exact_rgb)
        self.timings["to_rgb"] += time.perf_counter() - start
        return rgb


MAX_REFERENCE_PIXELS = 2.0  # a reference holds at most this many times the working size's pixels


def reference_size(ref_h: int, ref_w: int, h: int, w: int, fit: str = "height") -> tuple[int, int]:
    """Size at which a ref_h x ref_w reference is encoded for working size h x w, at the
    reference's own aspect ratio, sides multiples of 8 and at least 16 (``check_size``).

    ``fit="height"`` (the default): the reference gets the frames' height, so that a portrait
    still of the scene is seen at the frames' scale (benchmarks/portrait_reference.py: 1-2 dB
    closer to the whole frame than ``fit="pixels"``, which gives it about h*w pixels and so
    enlarges a portrait reference); a wide reference is capped at ``MAX_REFERENCE_PIXELS`` times
    h*w. A reference of the working size's aspect ratio (within rounding) gets exactly (h, w).
    """
    if fit not in ("height", "pixels"):
        raise RefcolorError(f"unknown reference fit {fit!r}; use height or pixels")
    scale = h / ref_h if fit == "height" else math.sqrt(h * w / (ref_h * ref_w))
    scale = min(scale, math.sqrt(MAX_REFERENCE_PIXELS * h * w / (ref_h * ref_w)))
    rh, rw = ref_h * scale, ref_w * scale
    if abs(rh - h) < 8 and abs(rw - w) < 8:
        return h, w
    return round_size(rh), round_size(rw)


def check_color_reference(rgb: np.ndarray) -> np.ndarray:
    lab = rgb_to_lab(uint8_to_tensor(rgb[::4, ::4]))
    if lab[:, 1:].abs().mean().item() < MIN_REFERENCE_CHROMA:
        raise RefcolorError("the reference image is gray: a color reference is needed")
    return rgb
