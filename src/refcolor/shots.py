"""Shots: scene-cut detection (PySceneDetect), per-shot reference schedules, contact sheets.

A film has many shots, each wanting its own reference. ``detect_shots`` finds the cuts with
PySceneDetect's content detector on luminance (old films have no chroma to compare);
``ReferenceSchedule`` says which references are active from which frame on, and where the
linkage memory must be reset so that colors never bleed across a cut.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import RefcolorError
from .video import open_source

_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
THUMB_WIDTH = 192


@dataclass
class Shot:
    index: int
    start: int  # first frame
    end: int  # one past the last frame
    start_time: float  # seconds
    thumbnail: np.ndarray = field(repr=False)  # first frame, THUMB_WIDTH wide, RGB uint8


def detect_shots(path: str | Path, threshold: float = 27.0, min_frames: int = 15, progress: bool = False) -> list[Shot]:
    """Shots of a video or frame folder (one decoding pass at reduced size)."""
    import cv2
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector
    from tqdm import tqdm

    detector = ContentDetector(threshold=threshold, min_scene_len=min_frames, luma_only=True)
    cuts, thumbs, count = [0], {}, 0
    with open_source(path) as source:
        fps = float(source.info.fps or 25)
        scale = THUMB_WIDTH / source.info.width
        size = (THUMB_WIDTH, max(1, round(source.info.height * scale)))
        for frame in tqdm(source, total=source.info.num_frames, disable=not progress, unit="frame", desc="shots"):
            small = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA)
            for cut in detector.process_frame(FrameTimecode(frame.index, fps=fps), small[:, :, ::-1].copy()):
                cuts.append(int(cut.frame_num))
            if frame.index in cuts or frame.index == 0:
                thumbs[frame.index] = small
            count += 1
    cuts = sorted(set(c for c in cuts if 0 <= c < count))
    bounds = cuts + [count]
    return [Shot(i, a, b, a / fps, thumbs.get(a, next(iter(thumbs.values())))) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def contact_sheet(shots: list[Shot], path: str | Path, columns: int = 6) -> Path:
    """One labelled thumbnail per shot (index, first frame, time), written atomically as PNG."""
    from PIL import Image, ImageDraw

    th = max(s.thumbnail.shape[0] for s in shots)
    rows = -(-len(shots) // columns)
    sheet = Image.new("RGB", (columns * THUMB_WIDTH, rows * (th + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    for s in shots:
        x, y = (s.index % columns) * THUMB_WIDTH, (s.index // columns) * (th + 16)
        sheet.paste(Image.fromarray(s.thumbnail), (x, y + 16))
        draw.text((x + 4, y + 2), f"#{s.index} frame {s.start} {format_time(s.start_time)}", fill="black")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial.png")
    sheet.save(tmp)
    tmp.replace(path)
    return path


def contact_sheet_path(input: str | Path, explicit: str | Path | None = None) -> Path:
    """Where ``refcolor shots`` writes its contact sheet: ``explicit``, else INPUT-NAME_shots.png in
    the current folder. Never in the input's folder (the folder holding it, or a frame-folder input
    itself, where a PNG would become a frame): data folders stay as they were."""
    source = Path(input).resolve()
    name = (source.name if source.is_dir() else source.stem) + "_shots.png"
    path = (Path(explicit) if explicit else Path.cwd() / name).resolve()
    if path.parent == source.parent or (source.is_dir() and source in path.parents):
        raise RefcolorError(f"the contact sheet would be written into the input's folder {path.parent}; "
                            "run refcolor shots from another folder or give --sheet DIR/NAME.png")
    if not path.parent.is_dir():
        raise RefcolorError(f"folder does not exist: {path.parent}")
    return path


def format_time(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


def parse_reference_spec(spec: str) -> tuple[int | float | None, str]:
    """'a.jpg' -> (None, 'a.jpg'); '120:a.jpg' -> (120 frames); '00:01:12.5:b.jpg' -> (72.5 seconds).

    A value naming an existing file is always a plain path (file names may contain ':').
    """
    if Path(spec).exists() or ":" not in spec:
        return None, spec
    head, _, rest = spec.partition(":")
    if head.isdigit() and not _TIMESTAMP.match(spec.rsplit(":", 1)[0]):
        return int(head), rest
    stamp, _, path = spec.rpartition(":")
    m = _TIMESTAMP.match(stamp)
    if m:
        hours, minutes, seconds = int(m.group(1) or 0), int(m.group(2)), float(m.group(3))
        return hours * 3600 + minutes * 60 + seconds, path
    if head.isdigit():
        return int(head), rest
    raise RefcolorError(f"cannot read reference {spec!r}: use PATH, FRAME:PATH or [HH:]MM:SS[.s]:PATH")


def read_references(references, missing: str) -> tuple[list[tuple[int | float | None, str]], list[np.ndarray]]:
    """One reference or a list (``PATH`` or ``START:PATH``) -> their (start, path) specs and color
    images, for ``colorize`` and ``coverage`` alike; one-line errors for none (``missing``), a file
    not found, or a gray photograph."""
    from .inference import check_color_reference
    from .video import read_image

    refs = [references] if isinstance(references, (str, Path)) else list(references)
    if not refs:
        raise RefcolorError(missing)
    specs = [parse_reference_spec(str(r)) for r in refs]
    images = []
    for _, ref in specs:
        if not Path(ref).is_file():
            raise RefcolorError(f"reference not found: {ref}")
        images.append(check_color_reference(read_image(ref)))
    return specs, images


@dataclass
class ReferenceSchedule:
    """Which references are active from which frame on; memory resets at every change and cut."""

    starts: list[int]  # ascending, starts[0] == 0
    sets: list[list[int]]  # indices into the reference list, per entry
    cuts: set[int] = field(default_factory=set)  # frames where the linkage memory is reset

    def at(self, frame: int) -> list[int]:
        i = max(k for k, s in enumerate(self.starts) if s <= frame)
        return self.sets[i]

    def boundaries(self) -> set[int]:
        return set(self.starts[1:]) | self.cuts


def build_schedule(starts: list[int | float | None], fps: Fraction | None, shots: list[Shot] | None = None,
                   best_for_shot=None) -> ReferenceSchedule:
    """From parsed reference starts (frames: int, seconds: float, None: whole video).

    With ``shots`` and no explicit starts, each shot gets the reference ``best_for_shot(shot)``
    (an index), or all references when no chooser is given.
    """
    rate = float(fps or 25)
    frames = [None if s is None else (s if isinstance(s, int) else int(round(s * rate))) for s in starts]
    everywhere = [i for i, f in enumerate(frames) if f is None]
    timed = sorted({f for f in frames if f is not None})
    cuts = {s.start for s in shots[1:]} if shots else set()
    if not timed:
        if shots and best_for_shot is not None and len(everywhere) > 1:
            picks = [[best_for_shot(s)] for s in shots]
            return ReferenceSchedule([s.start for s in shots], picks, cuts)
        return ReferenceSchedule([0], [everywhere], cuts)
    by_start = {t: [i for i, f in enumerate(frames) if f == t] for t in timed}
    entries = [] if timed[0] == 0 else [(0, everywhere or by_start[timed[0]])]
    entries += [(t, by_start[t] + everywhere) for t in timed]
    return ReferenceSchedule([e[0] for e in entries], [e[1] for e in entries], cuts)


class ReferenceMatcher:
    """Picks the reference that matches a shot best, by cosine similarity of ImageNet
    EfficientNet-Lite0 features (R_high pooled on a 2x4 grid, so layout counts), both gray."""

    def __init__(self, references: list[np.ndarray], device="cpu") -> None:
        from .models.backbones import build_backbone

        self.device = device
        self.backbone = build_backbone("efficientnet_lite0", pretrained=True).to(device).eval()
        self.descriptors = np.stack([self.describe(r) for r in references])

    def describe(self, rgb: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from .color import uint8_to_tensor

        gray = uint8_to_tensor(rgb).mean(dim=1, keepdim=True).repeat(1, 3, 1, 1).to(self.device)
        gray = F.interpolate(gray, size=(128, 224), mode="area")
        with torch.inference_mode():
            _, high = self.backbone(gray)
            d = F.adaptive_avg_pool2d(high, (2, 4)).flatten().cpu().numpy()
        return d / max(np.linalg.norm(d), 1e-8)

    def best(self, shot: Shot) -> int:
        return int(np.argmax(self.descriptors @ self.describe(shot.thumbnail)))
