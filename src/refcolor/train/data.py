"""Training clips: T consecutive frames at H x W, a color reference, flows and occlusion masks.

Every sample is a pure function of ``(seed, key)``: ``key = epoch * len(dataset) + item`` comes from
``EpochSampler`` and seeds all random choices (clip start, crop, flip, reference), so a run gives the
same batches whatever ``num_workers`` is, across ``--resume``, and split across DDP ranks.

Pairs are drawn like evaluation (QUALITY-NOTES point 5: evaluation colors frames up to 100+ frames
away from the reference; pairs only a few frames apart transfer poorly), by ``plan_pair``:
  * the gap ``g`` between the reference and the clip's nearest frame is uniform over
    ``[ref_gap_min, n - clip_len]`` (``ref_gap_max`` caps it; a sequence too short for the minimum
    uses the largest gap it has), so gaps cover the whole sequence; the reference is never one of
    the clip's frames;
  * with ``ref_first_prob`` the reference is the sequence's first frame (evaluation's layout), else
    it lies anywhere, before or after the clip; a clip lying before its reference is played
    backward, so that the clip always moves away from its reference, as in evaluation;
  * a sequence of at most ``clip_len`` frames bounces over all but one end frame, which is the
    reference;
  * ``ref_other_prob``: a frame of another sequence (the reference does not hold the right colors).
The reference then gets its own crop / zoom / flip / small rotation and a mild exposure and
saturation jitter, so that even the first frame is never a pixel copy of the target.

Flows for the temporal loss (paper Eq. 10) are computed on canonical frames through ``FlowCache``
(once per frame pair, on disk; later epochs read them) and then cropped, scaled and flipped with
the frames. Still photos become pseudo-videos by a smooth random homography path; their flow and
mask are exact (from the homographies), so they need no cache.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import RefcolorError
from ..flow import FlowCache, build_flow, occlusion_mask
from .augment import (apply_flow, apply_image, crop_params, jitter_reference, render_still, rotate, still_flow,
                      still_path)
from .sources import Sequence, to_canonical


@dataclass
class ClipSpec:
    size: tuple[int, int] = (216, 384)  # frames are scaled to cover this (the evaluation scale); reference size
    crop: tuple[int, int] | None = None  # clip frames are random crops of this size (None: ``size``)
    clip_len: int = 4
    zoom: float = 1.25  # maximal extra zoom of the random crop
    ref_first_prob: float = 0.2  # the reference is the sequence's first frame (evaluation's layout)
    ref_other_prob: float = 0.05  # the reference is a frame of another sequence
    ref_gap_min: int = 5  # frames between the reference and the clip's nearest frame, where the sequence allows
    ref_gap_max: int = 0  # 0: up to the whole sequence
    aux_frames: int = 0  # frames per clip for the perceptual / adversarial terms (0 = all)
    still_weight: float = 1.0  # items per still photo (a frame sequence gets one per clip_len*5 frames)

    @classmethod
    def from_config(cls, cfg) -> "ClipSpec":
        """The sampling of a ``TrainConfig``."""
        return cls(size=(cfg.height, cfg.width), crop=cfg.crop_size, clip_len=cfg.clip_len, zoom=cfg.zoom,
                   ref_first_prob=cfg.ref_first_prob, ref_other_prob=cfg.ref_other_prob, ref_gap_min=cfg.ref_gap_min,
                   ref_gap_max=cfg.ref_gap_max, aux_frames=cfg.aux_frames, still_weight=cfg.still_weight)


def _reflect(i: int, n: int) -> int:
    """Index i of the bounce (0..n-1, n-2..0, ...) extension of a sequence of n frames."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def plan_pair(rng, n: int, t_len: int, gap_min: int = 5, gap_max: int = 0, first_prob: float = 0.0) -> tuple[list[int], int]:
    """(clip frame indices, reference index) in a sequence of ``n`` frames; see the module doc.

    The reference is never one of the clip's frames when ``n >= 2``. With ``n > t_len`` the gap
    ``g`` (reference to the clip's nearest frame) is uniform over ``[min(gap_min, hi), hi]``,
    ``hi = n - t_len`` (capped by ``gap_max`` > 0), and the clip's first frame is ``g`` frames from
    the reference: a clip lying before its reference is returned in reverse order.
    """
    room = n - t_len
    if room >= 1:
        hi = room if gap_max <= 0 else max(1, min(room, gap_max))
        g = int(rng.integers(min(gap_min, hi), hi + 1))
        if rng.random() < first_prob:
            return list(range(g, g + t_len)), 0
        if rng.random() < 0.5:  # reference before the clip
            start = int(rng.integers(g, n - t_len + 1))
            return list(range(start, start + t_len)), start - g
        start = int(rng.integers(0, n - t_len - g + 1))  # reference after the clip: play it backward
        return list(range(start + t_len - 1, start - 1, -1)), start + t_len - 1 + g
    if n < 2:
        return [0] * t_len, 0
    # at most t_len frames: the clip bounces over all frames but one end, the reference
    ref = 0 if rng.random() < 0.5 else n - 1
    m, lo = n - 1, 1 if ref == 0 else 0
    start = int(rng.integers(0, 2 * (m - 1))) if m > 1 else 0
    idx = [lo + _reflect(start + k, m) for k in range(t_len)]
    return (idx if ref == 0 else idx[::-1]), ref


# ----------------------------------------------------------------------------- dataset


class ClipDataset(Dataset):
    """Samples: dict of ``rgb`` T,3,h,w float [0,1] (h,w = ``crop``); ``ref`` 3,H,W (H,W = ``size``);
    ``flow`` T-1,2,h,w (frame t -> t-1, on frame t's grid); ``mask`` T-1,1,h,w (1 = valid); ``aux``
    K frame indices; ``key``."""

    def __init__(self, sequences: list[Sequence], spec: ClipSpec, seed: int = 0, flow: str = "auto",
                 flow_cache: str | Path | None = None, frame_cache: str | Path | None = None) -> None:
        if not sequences:
            raise RefcolorError("no training sequences")
        self.sequences, self.spec, self.seed = sequences, spec, seed
        self.flow_kind = flow
        self.flow_cache = FlowCache(flow_cache) if flow_cache else None
        self.frame_cache = Path(frame_cache) if frame_cache else None
        self._estimator = None
        self.failures: dict[str, str] = {}
        self.items: list[int] = []
        for i, s in enumerate(sequences):  # longer sequences give more clips per epoch
            reps = max(1, round(spec.still_weight)) if s.kind == "still" else max(1, min(10, s.num_frames // (spec.clip_len * 5)))
            self.items += [i] * reps

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:  # loader workers start by spawn: the flow estimator is rebuilt there
        return {**self.__dict__, "_estimator": None}

    @property
    def estimator(self):
        if self._estimator is None:
            self._estimator = build_flow(self.flow_kind)
        return self._estimator

    def __getitem__(self, key: int) -> dict:
        epoch, i = divmod(int(key), len(self.items))
        rng = np.random.default_rng([self.seed, epoch, i])
        seq_idx = self.items[i]
        for _ in range(8):
            seq = self.sequences[seq_idx]
            if not seq.bad:
                try:
                    sample = self._make(seq_idx, rng)
                    sample["key"] = torch.tensor(int(key))
                    return sample
                except RefcolorError as err:  # a corrupt file among many: skip it, counted
                    seq.bad = True
                    self.failures[seq.name] = str(err)
                    warnings.warn(f"skipping training sequence {seq.name}: {err}", stacklevel=2)
            seq_idx = int(rng.integers(len(self.sequences)))
        raise RefcolorError(f"too many unreadable training sequences ({len(self.failures)})")

    # -- one sample ----------------------------------------------------------------------
    def _make(self, seq_idx: int, rng) -> dict:
        spec, size, t_len = self.spec, self.spec.crop or self.spec.size, self.spec.clip_len
        seq = self.sequences[seq_idx]
        foreign = bool(rng.random() < spec.ref_other_prob) and len(self.sequences) > 1
        if seq.kind == "still":
            frames, flows, masks, own, gap = self._still_clip(seq, rng)
        else:
            frames, flows, masks, own, gap = self._video_clip(seq, rng, read_ref=not foreign)
        if foreign:
            src = self._foreign_frame(seq_idx, rng)
            src, gap = (own(), gap) if src is None else (src, -1)
        else:
            src = own()
        ref = self._reference(rng, src)
        k = t_len if spec.aux_frames <= 0 else min(spec.aux_frames, t_len)
        aux = np.sort(rng.choice(t_len, size=k, replace=False))
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return {
            "rgb": to_t(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0),
            "ref": to_t(ref).permute(2, 0, 1).float().div_(255.0),
            "flow": to_t(np.stack(flows)).permute(0, 3, 1, 2).float() if flows else torch.zeros(0, 2, *size),
            "mask": to_t(np.stack(masks))[:, None].float() if masks else torch.zeros(0, 1, *size),
            "aux": torch.from_numpy(aux.astype(np.int64)),
            "ref_gap": torch.tensor(gap),  # frames from the reference to the clip's nearest frame; -1: foreign or still
        }

    def _video_clip(self, seq: Sequence, rng, read_ref: bool = True):
        """Clip frames, flows, masks, a function giving the canonical reference frame, and the gap."""
        spec, size, t_len = self.spec, self.spec.size, self.spec.clip_len
        crop = spec.crop or size
        idx, r = plan_pair(rng, seq.num_frames, t_len, spec.ref_gap_min, spec.ref_gap_max, spec.ref_first_prob)
        canon = seq.read(idx + [r] if read_ref else idx, size, self.frame_cache)
        chw = canon[idx[0]].shape[:2]
        scaled, offset, flip = crop_params(rng, chw, crop, self.spec.zoom)
        frames = [apply_image(canon[i], scaled, offset, flip, crop) for i in idx]
        flows, masks = [], []
        for t in range(1, t_len):
            a, b = idx[t], idx[t - 1]
            if a == b:  # a sequence of one frame
                f, m = np.zeros(chw + (2,), np.float32), np.ones(chw, np.float32)
            else:
                f = self._flow(seq, canon[a], canon[b], (a, b))
                back = self._flow(seq, canon[b], canon[a], (b, a))
                m = occlusion_mask(f, back)
            f, m = apply_flow(f, m, chw, scaled, offset, flip, crop)
            flows.append(f)
            masks.append(m)
        own = lambda: canon[r] if r in canon else seq.read([r], size, self.frame_cache)[r]  # noqa: E731
        return frames, flows, masks, own, min(abs(r - i) for i in idx)

    def _flow(self, seq, a, b, pair):
        if self.flow_cache is None:
            return self.estimator(a, b)
        return self.flow_cache.flow(self.estimator, a, b, source=seq.path, pair=pair)

    def _still_clip(self, seq: Sequence, rng):
        full, t_len = self.spec.size, self.spec.clip_len
        size = self.spec.crop or full
        img = seq.read([0], full)[0]
        img = to_canonical(img, (int(full[0] * 1.6), int(full[1] * 1.6)))  # room for the camera to move
        mats = still_path(rng, img.shape[:2], full, t_len)
        if size != full:  # a crop of the full view: shift the output origin
            y0, x0 = int(rng.integers(0, full[0] - size[0] + 1)), int(rng.integers(0, full[1] - size[1] + 1))
            mats = [m @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]]) for m in mats]
        frames = [render_still(img, m, size) for m in mats]
        if rng.random() < 0.5:
            frames, mats = [np.ascontiguousarray(f[:, ::-1]) for f in frames], [m @ np.array([[-1, 0, size[1] - 1], [0, 1, 0], [0, 0, 1]]) for m in mats]
        flows, masks = [], []
        for t in range(1, t_len):
            f, m = still_flow(mats[t], mats[t - 1], img.shape[:2], size)
            flows.append(f)
            masks.append(m)
        # the reference: the photo itself (first_prob) or an independent view of it
        own = img if rng.random() < self.spec.ref_first_prob else render_still(img, still_path(rng, img.shape[:2], full, 1)[0], full)
        return frames, flows, masks, lambda: own, -1

    def _foreign_frame(self, seq_idx: int, rng) -> np.ndarray | None:
        """A frame of another sequence, or None when that one is unreadable (then marked bad)."""
        j = int(rng.integers(len(self.sequences) - 1))
        other = self.sequences[j if j < seq_idx else j + 1]
        if other.bad:
            return None
        try:
            return self._any_frame(other, rng)
        except RefcolorError as err:  # the other sequence is the broken one, not this clip's
            other.bad = True
            self.failures[other.name] = str(err)
            warnings.warn(f"skipping training sequence {other.name}: {err}", stacklevel=2)
            return None

    def _reference(self, rng, src: np.ndarray) -> np.ndarray:
        """The reference of a sample from its canonical source frame: own crop / zoom / flip, a small
        rotation half the time, mild exposure and saturation jitter."""
        spec, size = self.spec, self.spec.size
        src = rotate(rng, src) if rng.random() < 0.5 else src
        scaled, offset, flip = crop_params(rng, src.shape[:2], size, spec.zoom)
        ref = apply_image(src, scaled, offset, flip, size, cv2.INTER_AREA if scaled[0] < src.shape[0] else cv2.INTER_LINEAR)
        return jitter_reference(rng, ref)

    def _any_frame(self, seq: Sequence, rng) -> np.ndarray:
        size = self.spec.size
        if seq.kind == "still":
            img = to_canonical(seq.read([0], size)[0], (int(size[0] * 1.6), int(size[1] * 1.6)))
            return render_still(img, still_path(rng, img.shape[:2], size, 1)[0], size)
        i = int(rng.integers(seq.num_frames))
        return seq.read([i], size, self.frame_cache)[i]


# ----------------------------------------------------------------------------- sampling


class EpochSampler(Sampler):
    """Infinite, resumable sampler with DistributedSampler semantics.

    Epoch ``e`` is a permutation of the items (seeded by ``seed + e``), padded by wrapping to a
    multiple of ``world_size``; rank ``r`` takes every ``world_size``-th entry from ``r``. Yields
    keys ``e * n + item``. ``start`` = samples this rank has already consumed (the resume point).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.n, self.seed, self.rank, self.world, self.start = n, seed, rank, world_size, start
        self.per_rank = -(-n // world_size)

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank * self.world
        perm = (perm * (total // self.n + 1))[:total]
        return perm[self.rank :: self.world]

    def __iter__(self):
        epoch, pos = divmod(self.start, self.per_rank)
        while True:
            local = self.order(epoch)
            for j in range(pos, self.per_rank):
                yield epoch * self.n + local[j]
            epoch, pos = epoch + 1, 0


def close_loader(it) -> None:
    """End a DataLoader iterator's worker processes now (idempotent). The workers ignore SIGTERM
    (``worker_init``): left to Python's exit, which terminates daemonic children by SIGTERM and
    then joins them, they would keep the process from ever exiting."""
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def watch_loader(it):
    """``it``, with ``close_loader`` run at interpreter exit too (on any path the trainer's own
    ``close_loader`` call misses). Registered after torch's and multiprocessing's exit hooks, it runs
    before them, while torch still shuts workers down."""
    import atexit
    import weakref

    ref = weakref.ref(it)
    atexit.register(lambda: close_loader(ref()) if ref() is not None else None)
    return it


def worker_init(_worker_id: int) -> None:
    import signal

    cv2.setNumThreads(1)
    # Ctrl-C and SIGTERM stop the trainer, which finishes its step, writes a checkpoint and then ends the
    # workers. `timeout`, `docker stop`, systemd and batch schedulers signal the whole process group: a
    # worker killed by that SIGTERM made the trainer die mid-step with a traceback and no checkpoint.
    # (A worker whose trainer is gone exits by itself: torch's watchdog checks its parent.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
