"""Optical flow and occlusion, shared by training's temporal loss and evaluation's warp error.

Conventions (everywhere in refcolor):

* images are ``H,W,3`` uint8 RGB; a flow is ``H,W,2`` float32 ``(x, y)`` in pixels;
* ``flow = estimator(a, b)`` goes *from a to b*: ``a(p) ~ b(p + flow(p))``;
* ``warp(b, flow)`` is the backward warp ``out(p) = b(p + flow(p))``, so it brings ``b`` onto
  ``a``'s pixel grid; bilinear, with coordinates outside the frame clamped to the border
  (``cv2.BORDER_REPLICATE``), the same rule as ``warp_torch`` (``grid_sample``, ``border``).

Estimators: torchvision's RAFT (large or small) when its weights file is already in the torch
hub cache, else OpenCV's DIS (medium preset). Nothing here ever downloads weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import RefcolorError
from .hub import hub_folder, load_into, not_found

_RAFT_VARIANTS = ("large", "small")


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            raise RefcolorError(f"flow input {name} must be an H,W,3 uint8 RGB array, got "
                                f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if a.shape != b.shape:
        raise RefcolorError(f"flow inputs differ in size: {a.shape} vs {b.shape}")


class FlowEstimator:
    """Base class: ``est(a, b)`` -> flow ``H,W,2`` float32 from ``a`` to ``b``.

    ``name`` is the family (``"raft"`` or ``"dis"``); ``identity`` names the exact estimator
    (variant and settings) and is what ``FlowCache`` keys on.
    """

    name: str = "base"

    @property
    def identity(self) -> str:
        return self.name

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class DISFlow(FlowEstimator):
    """OpenCV's Dense Inverse Search (Kroeger et al. 2016) on the luma of the RGB frames."""

    name = "dis"

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(preset)

    @property
    def identity(self) -> str:
        return f"dis-preset{self.preset}"

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        _check_pair(a, b)
        ga = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
        gb = cv2.cvtColor(np.ascontiguousarray(b), cv2.COLOR_RGB2GRAY)
        return np.ascontiguousarray(self._dis.calc(ga, gb, None), dtype=np.float32)


def raft_weights_path(variant: str = "large") -> Path:
    """Where torchvision keeps RAFT's default weights: ``<torch hub dir>/checkpoints/<file>``."""
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    if variant not in _RAFT_VARIANTS:
        raise RefcolorError(f"unknown RAFT variant {variant!r}; use one of {', '.join(_RAFT_VARIANTS)}")
    weights = Raft_Large_Weights.DEFAULT if variant == "large" else Raft_Small_Weights.DEFAULT
    return hub_folder() / weights.url.rsplit("/", 1)[-1]


class RaftFlow(FlowEstimator):
    """torchvision's RAFT, weights read from a local file (never downloaded).

    Frames are scaled to [-1, 1] as torchvision's preset does, padded (replicate) at the right and
    bottom to a multiple of 8 and to at least 128 px (RAFT's correlation pyramid needs it), and
    the last of ``num_flow_updates`` predictions is cropped back.
    """

    name = "raft"

    def __init__(self, weights: str | Path, variant: str = "large", device: str | torch.device = "cpu",
                 num_flow_updates: int = 12) -> None:
        from torchvision.models.optical_flow import raft_large, raft_small

        if variant not in _RAFT_VARIANTS:
            raise RefcolorError(f"unknown RAFT variant {variant!r}; use one of {', '.join(_RAFT_VARIANTS)}")
        self.variant, self.device, self.num_flow_updates = variant, torch.device(device), num_flow_updates
        model = (raft_large if variant == "large" else raft_small)(weights=None, progress=False)
        load_into(model, weights, f"RAFT-{variant}")
        self.model = model.eval().to(self.device)

    @property
    def identity(self) -> str:
        return f"raft_{self.variant}-it{self.num_flow_updates}"

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        _check_pair(a, b)
        h, w = a.shape[:2]
        ph, pw = max((-h) % 8, 128 - h), max((-w) % 8, 128 - w)

        def prep(x: np.ndarray) -> Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(2, 0, 1)[None].float()
            t = t / 127.5 - 1.0
            return F.pad(t, (0, pw, 0, ph), mode="replicate") if (ph or pw) else t

        with torch.inference_mode():
            flows = self.model(prep(a), prep(b), num_flow_updates=self.num_flow_updates)
        return np.ascontiguousarray(flows[-1][0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy())


def build_flow(kind: str = "auto", device: str | torch.device = "cpu") -> FlowEstimator:
    """``"auto"``: RAFT-large, else RAFT-small, if its weights are in the torch hub cache, else DIS.

    ``"raft"`` (either variant), ``"raft_large"``, ``"raft_small"`` need the weights file and raise
    ``RefcolorError`` naming the file and the folder when it is absent; ``"dis"`` always works.
    """
    if kind == "dis":
        return DISFlow()
    variants = {"auto": _RAFT_VARIANTS, "raft": _RAFT_VARIANTS,
                "raft_large": ("large",), "raft_small": ("small",)}.get(kind)
    if variants is None:
        raise RefcolorError(f"unknown flow estimator {kind!r}; use auto, raft, raft_large, raft_small or dis")
    paths = [raft_weights_path(v) for v in variants]
    for variant, path in zip(variants, paths):
        if path.is_file():
            return RaftFlow(path, variant=variant, device=device)
    if kind == "auto":
        return DISFlow()
    raise not_found("RAFT", [p.name for p in paths], paths[0].parent, hint="or use the dis estimator")


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp ``out(p) = image(p + flow(p))``: bilinear, border-replicate outside the frame.

    ``image``: ``H,W`` or ``H,W,C`` float array (any C); ``flow``: ``H,W,2``. Returns float32.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or flow.shape != image.shape[:2] + (2,):
        raise RefcolorError(f"warp: image {image.shape} and flow {flow.shape} do not match (flow must be H,W,2)")
    h, w = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx = gx + flow[..., 0].astype(np.float32)
    my = gy + flow[..., 1].astype(np.float32)
    src = image.astype(np.float32, copy=False)

    def remap(x: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(x), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    if src.ndim == 2:
        return remap(src)
    # cv2.remap handles at most 4 channels at once
    out = [remap(src[..., c:c + 4]).reshape(h, w, -1) for c in range(0, src.shape[2], 4)]
    return np.concatenate(out, axis=2) if len(out) > 1 else out[0]


def warp_torch(x: Tensor, flow: Tensor) -> Tensor:
    """Torch twin of ``warp``: ``x`` B,C,H,W, ``flow`` B,2,H,W (x, y) -> ``x(p + flow(p))``.

    ``grid_sample`` (bilinear, ``padding_mode="border"``, ``align_corners=True``), differentiable
    in both ``x`` and ``flow``.
    """
    b, _, h, w = x.shape
    if flow.shape != (b, 2, h, w):
        raise RefcolorError(f"warp_torch: flow {tuple(flow.shape)} does not match image {tuple(x.shape)}")
    flow = flow.to(x.dtype)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def occlusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray, alpha1: float = 0.01, alpha2: float = 0.5,
                   motion_boundary: bool = False) -> np.ndarray:
    """Valid-pixel mask (1 = valid, 0 = occluded) on the grid of the frame ``flow_fw`` starts from.

    ``flow_fw`` goes from frame A to frame B, ``flow_bw`` from B to A (both on their own grid).
    With ``w = flow_fw(p)`` and ``w^ = flow_bw(p + w)`` (``flow_bw`` warped onto A's grid), the
    forward-backward check of Sundaram et al. 2010 / Ruder et al. 2016 keeps ``p`` iff

        |w + w^|^2 <= alpha1 * (|w|^2 + |w^|^2) + alpha2

    and ``p + w`` lies inside the frame (``0 <= x <= W-1``, ``0 <= y <= H-1``); out-of-frame is
    occluded. With ``motion_boundary=True`` the second test of Ruder et al. / Lai et al. 2018 also
    marks motion boundaries as occluded:

        |du|^2 + |dv|^2 > 0.01 * |w|^2 + 0.002

    with forward differences of ``w = (u, v)`` along x and y (0 at the last column / row),
    exactly as in Lai et al.'s ``detect_occlusion``.
    """
    if flow_fw.shape != flow_bw.shape or flow_fw.ndim != 3 or flow_fw.shape[2] != 2:
        raise RefcolorError(f"occlusion_mask: flows must both be H,W,2, got {flow_fw.shape} and {flow_bw.shape}")
    fw = flow_fw.astype(np.float32, copy=False)
    bw_w = warp(flow_bw, fw)
    sq = lambda f: f[..., 0] ** 2 + f[..., 1] ** 2  # noqa: E731
    valid = sq(fw + bw_w) <= alpha1 * (sq(fw) + sq(bw_w)) + alpha2
    h, w = fw.shape[:2]
    x = np.arange(w, dtype=np.float32)[None, :] + fw[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + fw[..., 1]
    valid &= (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    if motion_boundary:
        grad = np.zeros((h, w), np.float32)
        for c in range(2):
            d = np.zeros((h, w), np.float32)
            d[:, :-1] = fw[:, :-1, c] - fw[:, 1:, c]
            grad += d ** 2
            d = np.zeros((h, w), np.float32)
            d[:-1, :] = fw[:-1, :, c] - fw[1:, :, c]
            grad += d ** 2
        valid &= ~(grad > 0.01 * sq(fw) + 0.002)
    return valid.astype(np.float32)


def _source_signature(source: str | Path, memo: dict | None = None) -> dict:
    """What identifies a source's content: path, mtime and size (for a folder: of every file in it).

    ``memo`` keeps folder signatures while the folder's own mtime is unchanged (files added,
    removed or renamed change it; a frame rewritten in place does not, until a new ``memo``).
    """
    path = Path(source).resolve()
    try:
        st = path.stat()
        if not path.is_dir():
            return {"source": str(path), "mtime_ns": st.st_mtime_ns, "size": st.st_size}
        if memo is not None and memo.get(path, (None,))[0] == st.st_mtime_ns:
            return memo[path][1]
        entries = sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(path) if e.is_file())
    except OSError as err:
        raise RefcolorError(f"flow cache: cannot read source {path}: {err}") from err
    sig = {"source": str(path), "files": hashlib.sha256(json.dumps(entries).encode()).hexdigest()}
    if memo is not None:
        memo[path] = (st.st_mtime_ns, sig)
    return sig


class FlowCache:
    """Flows computed once, stored as compressed ``.npz`` under ``root``.

    The key holds the estimator's ``identity``, the frame size and either ``source`` (a video file
    or a frame folder: resolved path + mtime + size, for a folder of every file in it) with the
    ``pair`` of frame indices, or, without ``source``, a hash of both frames' pixels. Flows are
    stored as ``dtype`` (float16 by default: 1/128 px steps below 16 px, 1/32 px below 64 px) and the
    stored value is what is returned on the first call too, so results never depend on whether
    the cache was warm. ``hits`` / ``misses`` count lookups.
    """

    def __init__(self, root: str | Path, dtype: type = np.float16) -> None:
        self.root = Path(root)
        self.dtype = np.dtype(dtype)
        self.hits = 0
        self.misses = 0
        self._folders: dict = {}

    def key(self, estimator: FlowEstimator, a: np.ndarray, b: np.ndarray,
            source: str | Path | None = None, pair: Sequence[int] | None = None) -> str:
        k: dict = {"v": 1, "estimator": estimator.identity, "size": list(a.shape[:2]), "dtype": self.dtype.str}
        if source is not None:
            if pair is None:
                raise RefcolorError("flow cache: a source needs the pair of frame indices")
            k.update(_source_signature(source, self._folders), pair=[int(i) for i in pair])
        else:
            k["pixels"] = [hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).hexdigest() for x in (a, b)]
        return hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def flow(self, estimator: FlowEstimator, a: np.ndarray, b: np.ndarray,
             source: str | Path | None = None, pair: Sequence[int] | None = None) -> np.ndarray:
        """``estimator(a, b)``, read from the cache when present, else computed and stored."""
        file = self.path(self.key(estimator, a, b, source, pair))
        if file.is_file():
            try:
                with np.load(file) as z:
                    flow = z["flow"]
                if flow.shape == a.shape[:2] + (2,):
                    self.hits += 1
                    return flow.astype(np.float32)
            except (OSError, ValueError, KeyError, EOFError):
                pass  # unreadable entry: compute again and overwrite
        self.misses += 1
        stored = estimator(a, b).astype(self.dtype)
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, flow=stored)
            os.replace(tmp, file)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"flow cache: cannot write {file}: {err}", stacklevel=2)
        return stored.astype(np.float32)
