"""Coverage: where the references hold nothing like the frame, per shot, and which frames to add.

The non-local warp colors each position from its best matches in the references; its Eq. 3
similarity S = max_j M says how good the best match is. A position is *uncovered* when
S < COVERAGE_THRESHOLD; a frame's uncovered share predicts its color error (docs/ROBUSTNESS.md).
S comes from the training-free ``warp`` model's features (ImageNet EfficientNet-Lite0, no trained
layer), so coverage works offline whatever model colorizes.

``measure_coverage(video, references)`` decodes the video once and returns a ``CoverageReport``:
the uncovered share of every frame, per shot; the frames that would make the best extra
references (greedy: the frame whose addition as ``-r FRAME:photo`` most reduces the shot's
uncovered share); ``write_sheet`` draws one row per shot with the uncovered regions tinted red.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import round_size
from .errors import RefcolorError

# Cosine similarity of the best reference match below which a position counts as uncovered.
# benchmarks/coverage_calibration.py on davis16-dev (warp, 216x384, reference = frame 0; the 682
# frames that are not references): 0.40 maximises the Pearson correlation of the per-frame
# uncovered share with the per-frame chroma error of the warp, r = 0.592 (0.58-0.59 over 0.37-0.45;
# mean within-sequence r 0.73); uncovered cells have twice the error of covered ones (9.7 vs 4.9).
COVERAGE_THRESHOLD = 0.40
# A frame with at least this uncovered share is reported as poorly covered: on davis16-dev 23 of
# the 682 frames, with a mean chroma error of 9.6 against 4.9 for the others.
FLAG_SHARE = 0.05
SAMPLES_PER_SHOT = 8  # frames per shot kept for the contact sheet and the suggestions
CANDIDATES_PER_SHOT = 4  # of those, the worst covered are tried as extra references
MAX_SUGGESTIONS = 2  # per shot
MIN_GAIN = 0.02  # a suggestion must lower the shot's uncovered share by at least this
SHEET_FRAMES = 4  # tiles per shot row
TILE_WIDTH = 240
TINT = np.array([255, 40, 40], np.float32)


def reference_size(height: int, width: int, work: tuple[int, int]) -> tuple[int, int]:
    """A reference's size: about the working size's pixel count at its own aspect ratio (x8)."""
    area = work[0] * work[1]
    h = round_size((area * height / width) ** 0.5)
    return h, round_size(h * width / height)


def best_match(query: Tensor, key: Tensor, chunk: int = 1024) -> Tensor:
    """S of Eq. 3 alone (no warp): query K,P and key K,Pr, both centred and normalised -> P."""
    return torch.cat([torch.einsum("kp,kr->pr", query[:, s:s + chunk], key).amax(dim=-1)
                      for s in range(0, query.shape[1], chunk)])


class CoverageMeter:
    """S maps of frames against a set of references, with the ``warp`` model's features."""

    def __init__(self, model=None, *, device: str = "auto", size: tuple[int, int] | None = None,
                 threshold: float = COVERAGE_THRESHOLD) -> None:
        from .inference import resolve_device

        if model is None:
            from .models.warp import build_warp_model

            model = build_warp_model().to(resolve_device(device))
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.size, self.threshold = size, threshold
        self._refs: list[np.ndarray] = []
        self._state = None
        self._cache: dict[tuple, object] = {}

    def set_references(self, references: list[np.ndarray]) -> None:
        self._refs = list(references)
        self._key = tuple(hashlib.sha1(r.tobytes()).hexdigest() + str(r.shape) for r in self._refs)
        self._state = self._cache.get((self._key, self.size))

    def _work(self, frames: list[np.ndarray]) -> Tensor:
        """RGB frames -> N,1,h,w normalised L at the working size (as ``Colorizer`` feeds it)."""
        from .color import as_rgb_uint8
        from .convert import luminance
        from .inference import working_size

        batch = np.stack([as_rgb_uint8(f) for f in frames])
        if self.size is None:
            self.size = working_size(*batch.shape[1:3])
        return F.interpolate(luminance(batch, self.device), size=self.size, mode="area") / 50.0 - 1.0

    def _reference_state(self):
        from .color import normalize_lab, rgb_to_lab, uint8_to_tensor
        from .models.network import RefState

        if self._state is None:
            if not self._refs:
                raise RefcolorError("coverage needs at least one color reference")
            states = []
            for ref in self._refs:
                rgb = F.interpolate(uint8_to_tensor(ref).to(self.device), mode="area",
                                    size=reference_size(*ref.shape[:2], self.size))
                states.append(self.model.encode_reference(normalize_lab(rgb_to_lab(rgb))))
            self._state = states[0] if len(states) == 1 else RefState.concat(states)
            self._cache[(self._key, self.size)] = self._state
        return self._state

    @torch.inference_mode()
    def similarity(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB (or gray) frames -> S maps N,h4,w4 float32: ``WarpModel.similarity`` without the warp
        (the softmax and chroma average, 1.7-2x the cost of the correlation, are not needed)."""
        l_work = self._work(frames)  # sets the working size on the first call
        ref = self._reference_state().keys[0][0]
        keys, (gh, gw) = self.model.match_keys(l_work)
        return torch.stack([best_match(k, ref) for k in keys]).view(-1, gh, gw).float().cpu().numpy()

    @torch.inference_mode()
    def keys(self, frames: list[np.ndarray]) -> Tensor:
        """The frames' own keys N,K,P, for trying them as references."""
        return self.model.match_keys(self._work(frames))[0]

    def uncovered(self, sim: np.ndarray) -> np.ndarray:
        """S maps -> uncovered share per map."""
        return (sim < self.threshold).reshape(len(sim), -1).mean(axis=1)


@dataclass
class Suggestion:
    frame: int
    shot: int
    before: float  # the shot's uncovered share (its sampled frames)
    after: float  # the same with this frame's photo as a reference from this frame on
    own: float  # the frame's own uncovered share

    def line(self) -> str:
        return (f"{self.frame}: a color photo of this frame ({100 * self.own:.0f}% uncovered) as -r {self.frame}:PHOTO "
                f"takes shot {self.shot} from {100 * self.before:.0f}% to {100 * self.after:.0f}% uncovered (sampled frames)")


@dataclass
class ShotCoverage:
    index: int
    start: int
    end: int
    shares: np.ndarray  # per frame of the shot
    samples: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)  # frame, gray thumb, S
    suggestions: list[Suggestion] = field(default_factory=list)

    def flagged(self, level: float = FLAG_SHARE) -> list[tuple[int, int]]:
        """Runs (first, last) of frames with an uncovered share >= level."""
        hot = np.flatnonzero(self.shares >= level) + self.start
        runs: list[tuple[int, int]] = []
        for f in hot:
            if runs and f == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], int(f))
            else:
                runs.append((int(f), int(f)))
        return runs

    def line(self) -> str:
        worst = int(np.argmax(self.shares))
        text = (f"coverage shot {self.index}: frames {self.start}-{self.end - 1}, uncovered {100 * self.shares.mean():.1f}% "
                f"mean, {100 * self.shares[worst]:.1f}% max (frame {self.start + worst})")
        runs = self.flagged()
        if runs:
            text += "; poorly covered: " + ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
        return text


@dataclass
class CoverageReport:
    threshold: float
    shots: list[ShotCoverage]

    @property
    def shares(self) -> np.ndarray:
        return np.concatenate([s.shares for s in self.shots])

    @property
    def suggestions(self) -> list[Suggestion]:
        return [g for s in self.shots for g in s.suggestions]

    def lines(self) -> list[str]:
        out = [s.line() for s in self.shots]
        out.append(f"extra references suggested: {len(self.suggestions) or 'none'} (FRAME: reason)")
        return out + [g.line() for g in self.suggestions]

    def write_csv(self, path: str | Path) -> Path:
        rows = ["frame,shot,uncovered_share"] + [f"{s.start + i},{s.index},{v:.4f}" for s in self.shots
                                                   for i, v in enumerate(s.shares)]
        return _atomic(Path(path), lambda tmp: tmp.write_text("\n".join(rows) + "\n"))


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RefcolorError(f"writing {path} failed: {err}") from None
    return path


def suggest(shot: ShotCoverage, keys: Tensor, sims: np.ndarray, threshold: float) -> list[Suggestion]:
    """Greedy extra references for one shot from its sampled frames (``keys`` N,K,P; ``sims`` N,P):
    each round adds the frame whose photo, used from that frame on, most lowers the mean uncovered
    share of the sampled frames; stops below MIN_GAIN. Queries use every other row and column."""
    frames = [f for f, _, _ in shot.samples]
    gh, gw = shot.samples[0][2].shape
    sub = np.arange(gh * gw).reshape(gh, gw)[::2, ::2].ravel()
    cov = sims[:, sub].astype(np.float32)
    own = (sims < threshold).mean(axis=1)
    candidates = [int(i) for i in np.argsort(-own, kind="stable")[:CANDIDATES_PER_SHOT] if own[i] >= FLAG_SHARE]
    cache: dict[tuple[int, int], np.ndarray] = {}

    def match(c: int, f: int) -> np.ndarray:
        if (c, f) not in cache:
            cache[(c, f)] = best_match(keys[f][:, sub], keys[c]).float().cpu().numpy()
        return cache[(c, f)]

    out: list[Suggestion] = []
    for _ in range(MAX_SUGGESTIONS):
        before = float((cov < threshold).mean())
        best = None
        for c in candidates:
            trial = [np.maximum(cov[f], match(c, f)) if frames[f] >= frames[c] else cov[f] for f in range(len(frames))]
            after = float((np.stack(trial) < threshold).mean())
            if best is None or after < best[1]:
                best = (c, after, trial)
        if best is None or before - best[1] < MIN_GAIN:
            break
        c, after, trial = best
        cov = np.stack(trial)
        candidates.remove(c)
        out.append(Suggestion(frames[c], shot.index, before, after, float(own[c])))
    return out


def _thumb(rgb: np.ndarray) -> np.ndarray:
    import cv2

    gray = rgb.mean(axis=-1).astype(np.uint8) if rgb.ndim == 3 else rgb
    h, w = gray.shape
    return cv2.resize(gray, (TILE_WIDTH, max(1, round(h * TILE_WIDTH / w))), interpolation=cv2.INTER_AREA)


def tint(gray: np.ndarray, sim: np.ndarray, threshold: float) -> np.ndarray:
    """Gray H,W uint8 + S map -> H,W,3 RGB with the uncovered positions tinted red."""
    import cv2

    up = cv2.resize(sim.astype(np.float32), gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    mask = (up < threshold)[..., None]
    return np.where(mask, 0.45 * rgb + 0.55 * TINT, rgb).round().astype(np.uint8)


def _samples(start: int, end: int) -> set[int]:
    return {int(round(x)) for x in np.linspace(start, end - 1, min(SAMPLES_PER_SHOT, end - start))}


def measure_coverage(input: str | Path, references, *, shots=None, size: str | tuple[int, int] | None = None,
                     device: str = "auto", threshold: float = COVERAGE_THRESHOLD, model=None, block: int = 4,
                     progress: bool = False) -> CoverageReport:
    """Uncovered share of every frame of ``input`` against ``references`` (PATH or START:PATH, as
    ``colorize`` takes them: each frame is measured against the references in force there), per
    shot (``shots``: from ``detect_shots``, detected when None), with suggested extra references."""
    from tqdm import tqdm

    from .inference import parse_size
    from .shots import build_schedule, detect_shots, read_references
    from .video import open_source

    path = Path(input)
    if not path.exists():
        raise RefcolorError(f"input not found: {path}")
    specs, images = read_references(references, "coverage needs at least one color reference (-r REF)")
    meter = CoverageMeter(model, device=device, size=parse_size(size) if isinstance(size, str) else size,
                          threshold=threshold)
    shot_list = shots if shots is not None else detect_shots(path, progress=progress)
    result: list[ShotCoverage] = []
    with open_source(path) as source:
        schedule = build_schedule([s for s, _ in specs], source.info.fps, shot_list)
        bounds = schedule.boundaries() | {s.start for s in shot_list}
        shot_at = iter(shot_list)
        shot, shares, kept, keys, pending = None, [], [], [], []

        def flush() -> None:
            if pending:
                meter.set_references([images[i] for i in schedule.at(pending[0].index)])
                sims = meter.similarity([f.rgb for f in pending])
                shares.extend(meter.uncovered(sims))
                for f, sim in zip(pending, sims):
                    if f.index in wanted:
                        kept.append((f.index, _thumb(f.rgb), sim.astype(np.float16)))
                        keys.append(meter.keys([f.rgb])[0])
                pending.clear()

        def close_shot() -> None:
            flush()
            if shot is None:
                return
            done = ShotCoverage(shot.index, shot.start, shot.start + len(shares), np.array(shares, np.float32), list(kept))
            if keys:
                sims = np.stack([s.reshape(-1) for _, _, s in kept]).astype(np.float32)
                done.suggestions = suggest(done, torch.stack(keys), sims, threshold)
            result.append(done)

        bar = tqdm(total=source.info.num_frames, unit="frame", desc="coverage", disable=not progress)
        for frame in source:
            if shot is None or frame.index >= shot.end:
                close_shot()
                shot = next(shot_at, None)
                if shot is None:  # more frames than the shot list covers: one more shot
                    shot = type(shot_list[-1])(len(result), frame.index, 1 << 62, 0.0, shot_list[-1].thumbnail)
                shares, kept, keys = [], [], []
                wanted = _samples(shot.start, min(shot.end, source.info.num_frames or shot.end))
            elif frame.index in bounds or len(pending) == block:
                flush()
            pending.append(frame)
            bar.update(1)
        close_shot()
        bar.close()
    if not result or not len(result[0].shares):
        raise RefcolorError(f"no frames could be decoded from {path}")
    return CoverageReport(threshold, result)


def _sheet_frames(shot: ShotCoverage) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Up to SHEET_FRAMES samples: the suggested and the worst covered frames, then spread."""
    by_frame = {f: (f, t, s) for f, t, s in shot.samples}
    frames = sorted(by_frame)
    pick = [g.frame for g in shot.suggestions] + [shot.start + int(np.argmax(shot.shares))]
    pick = [f for f in dict.fromkeys(pick) if f in by_frame]
    for i in np.linspace(0, len(frames) - 1, SHEET_FRAMES).round().astype(int):
        if len(pick) < SHEET_FRAMES and frames[i] not in pick:
            pick.append(frames[i])
    return [by_frame[f] for f in sorted(pick[:SHEET_FRAMES])]


def write_sheet(report: CoverageReport, path: str | Path) -> Path:
    """Contact sheet PNG: one row per shot, sampled frames in gray with the uncovered regions in red."""
    from PIL import Image, ImageDraw

    rows = [(s, _sheet_frames(s)) for s in report.shots]
    th = max((t.shape[0] for _, tiles in rows for _, t, _ in tiles), default=TILE_WIDTH // 2)
    row_h, gap = 18 + 14 + th + 6, 4
    sheet = Image.new("RGB", (SHEET_FRAMES * (TILE_WIDTH + gap) + gap, max(1, len(rows)) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    shares = {s.start + i: v for s, _ in rows for i, v in enumerate(s.shares)}
    for r, (shot, tiles) in enumerate(rows):
        y = r * row_h
        draw.text((gap, y + 3), f"shot {shot.index}: frames {shot.start}-{shot.end - 1}, "
                                f"uncovered {100 * shot.shares.mean():.0f}% mean (red: S < {report.threshold:.2f})", fill="black")
        suggested = {g.frame for g in shot.suggestions}
        for c, (frame, thumb, sim) in enumerate(tiles):
            x = gap + c * (TILE_WIDTH + gap)
            mark = "  <- add a reference" if frame in suggested else ""
            draw.text((x, y + 18), f"frame {frame}: {100 * shares[frame]:.0f}%{mark}", fill="black")
            sheet.paste(Image.fromarray(tint(thumb, sim.astype(np.float32), report.threshold)), (x, y + 32))
    return _atomic(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))


def check_outside_input(path: str | Path, input: str | Path) -> Path:
    """``path`` for a file refcolor writes, refused when it is in the input's folder (the folder
    holding the input, or inside a frame-folder input): data folders stay as they were."""
    path, source = Path(path).resolve(), Path(input).resolve()
    banned = [source.parent] + ([source] if source.is_dir() else [])
    if path.parent == source.parent or any(b in path.parents for b in banned[1:]):
        raise RefcolorError(f"{path.name} would be written into the input's folder {path.parent}; "
                            f"give another place (e.g. --coverage-sheet DIR/NAME.png)")
    if not path.parent.is_dir():
        raise RefcolorError(f"folder does not exist: {path.parent}")
    return path


def sheet_path(input: str | Path, explicit: str | Path | None = None, output: str | Path | None = None) -> Path:
    """Where the coverage sheet goes, checked before any work: ``explicit``, else beside ``output``
    (its stem + _coverage.png), else INPUT-NAME_coverage.png in the current folder."""
    name = lambda p: (Path(p).stem if Path(p).suffix else Path(p).name) + "_coverage.png"
    path = Path(explicit) if explicit else Path(output).with_name(name(output)) if output else Path.cwd() / name(input)
    if path.suffix.lower() != ".png":
        raise RefcolorError(f"the coverage sheet is a PNG image: {path.name} does not end in .png")
    return check_outside_input(path, input)


def report_files(report: CoverageReport, sheet: Path) -> list[str]:
    """Writes the sheet and its per-frame CSV; returns the lines to print."""
    write_sheet(report, sheet)
    csv = report.write_csv(sheet.with_suffix(".csv"))
    return report.lines() + [f"coverage sheet: {sheet}", f"per-frame coverage: {csv}"]
