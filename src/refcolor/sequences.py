"""Color sequences found on disk, shared by training (``train/sources.py``) and evaluation
(``eval/runner.py``), so that evaluation never imports training.

One record, :class:`Sequence`, and one discovery, :func:`discover_sequences`, with one rule for
each thing both read: DAVIS (the color frames are under ``JPEGImages/480p``, else ``JPEGImages``;
``Annotations/`` holds masks), a folder of frames (``video.list_frame_files``), a video file
(``VIDEO_SUFFIXES``), hidden names (skipped). Where the callers differ, ``layout`` says how:

* ``"children"`` (evaluation): the sequences directly under the root, named by folder name or file
  stem, in natural order; else the root itself as one folder of frames;
* ``"tree"`` (training): every folder of frames and every video file of the whole tree, named by
  their path relative to the root; training then probes the videos and drops short sequences;
* ``"stills"`` (training): the photographs directly in a folder, one ``still`` sequence each.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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


LAYOUTS = ("children", "tree", "stills")


def frames_root(root: Path) -> Path:
    """Where a tree's color frames are: DAVIS ``JPEGImages/480p`` or ``JPEGImages``, else ``root``."""
    davis = root / "JPEGImages"
    if not davis.is_dir():
        return root
    return davis / "480p" if (davis / "480p").is_dir() else davis


def discover_sequences(root: str | Path, *, layout: str = "children",
                       record: type[Sequence] = Sequence) -> list[Sequence]:
    """The sequences under ``root`` (see the module docstring for ``layout``), as ``record`` objects.

    Frame folders carry their files; videos are not opened (``num_frames`` 0); ``[]`` when nothing
    is found (the caller says what it expected). A missing or unreadable root is a RefcolorError.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise RefcolorError(f"data folder not found: {root}")
    try:
        if layout == "stills":
            return [record(f"still:{p.stem}", "still", p, 1) for p in sorted(root.iterdir())
                    if is_frame_name(p.name) and p.is_file()]
        base = frames_root(root)
        found = [record(name, kind, path, len(files), files)
                 for kind, path, name, files in (_tree(base) if layout == "tree" else _children(base))]
        if not found and layout == "children" and (files := list_frame_files(base)):
            found = [record(base.name, "frames", base, len(files), files)]
        return found
    except OSError as err:
        raise RefcolorError(f"cannot read data folder {root}: {' '.join(str(err).split())}") from None


Entry = tuple[str, Path, str, list[Path]]  # kind, path, name, frame files


def _children(base: Path) -> Iterator[Entry]:
    """Frame folders and videos directly under ``base``, natural order of their names."""
    for p in sorted(base.iterdir(), key=lambda q: natural_key(q.name)):
        if p.name.startswith("."):
            continue
        if p.is_dir() and (files := list_frame_files(p)):
            yield "frames", p, p.name, files
        elif p.is_file() and is_video_name(p.name):
            yield "video", p, p.stem, []


def _tree(base: Path) -> Iterator[Entry]:
    """Every frame folder and video of the tree: folders in sorted order, frames before videos."""
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel = here.relative_to(base).as_posix()
        files = list_frame_files(here) if any(is_frame_name(f) for f in filenames) else []
        if files:
            yield "frames", here, rel if rel != "." else here.name, files
        for f in sorted(filenames):
            if is_video_name(f):
                yield "video", here / f, f if rel == "." else f"{rel}/{f}", []
