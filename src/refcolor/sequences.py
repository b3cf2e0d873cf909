"""Color sequences found on disk, shared by training (``train/sources.py``) and evaluation
(``eval/runner.py``), so that evaluation never imports training.

One record, :class:`Sequence`, and the two ways the data folders are read:

* :func:`discover_sequences` (evaluation): the sequences directly under a root, DAVIS layout
  (``JPEGImages/480p/<seq>/``), folders of frames or video files, else the root itself as one
  folder of frames; named by folder name or file stem, in natural order.
* :func:`walk` (training): every folder of frames and every video file in a whole tree (DAVIS:
  ``JPEGImages/480p`` or ``JPEGImages``), named by their path relative to the root; the caller
  decides what to keep (training probes videos and drops short sequences).

Hidden files and folders are ignored by both; frame files follow ``video.list_frame_files``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import RefcolorError
from .video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_frame_files, natural_key


@dataclass
class Sequence:
    """One video-like sequence. ``kind``: "frames" (folder), "video" (file) or "still" (photo)."""

    name: str
    kind: str
    path: Path
    num_frames: int = 0  # 0: not counted (evaluation reads every frame)
    files: list[Path] = field(default_factory=list)
    fps: float | None = None


def is_frame_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def is_video_name(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_SUFFIXES and not name.startswith(".")


def discover_sequences(root: str | Path) -> list[Sequence]:
    """Sequences under ``root``: DAVIS layout, frame folders, color videos, or ``root`` itself."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RefcolorError(f"data folder not found: {root}")
    davis = root / "JPEGImages" / "480p"
    base = davis if davis.is_dir() else root
    found: list[Sequence] = []
    for p in sorted(base.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith("."):
            continue
        if p.is_dir() and list_frame_files(p):
            found.append(Sequence(p.name, "frames", p))
        elif p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(Sequence(p.stem, "video", p))
    if not found and list_frame_files(base):
        found.append(Sequence(base.name, "frames", base))
    if not found:
        raise RefcolorError(f"no sequences found in {root}: expected DAVIS (JPEGImages/480p/<seq>/*.jpg), "
                            f"folders of frames ({', '.join(IMAGE_SUFFIXES)}) or color videos ({', '.join(VIDEO_SUFFIXES)})")
    return found


def walk(root: Path, on_frames: Callable[[Path, list[Path], str], None],
         on_video: Callable[[Path, str], None]) -> None:
    """Every frame folder (``on_frames(folder, files, name)``) and video file (``on_video(path,
    name)``) of the tree under ``root``, in sorted order; OSError propagates."""
    davis = root / "JPEGImages"
    if davis.is_dir():  # DAVIS: frames only (Annotations/ holds masks, not color frames)
        res = davis / "480p" if (davis / "480p").is_dir() else davis
        root = res
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        if any(is_frame_name(f) for f in filenames):
            on_frames(here, list_frame_files(here), rel if rel != "." else here.name)
        for f in sorted(filenames):
            if is_video_name(f):
                on_video(here / f, f if rel == "." else f"{rel}/{f}")
