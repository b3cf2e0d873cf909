"""Batch colorization: a folder (or a list file) of videos into an output folder.

Finished outputs are skipped, so a batch can be rerun after an interruption (an unfinished
video resumes from its last segment). Under ``torchrun --nproc_per_node K`` each rank takes
every K-th video, so several processes or GPUs share an archive without coordination.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import RefcolorError
from .resume import work_path
from .video import VIDEO_SUFFIXES


def list_videos(source: Path) -> list[Path]:
    """A folder's video files (sorted), or the paths listed in a text file (one per line, # comments)."""
    if source.is_dir():
        return sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))
    lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    base = source.parent
    paths = [Path(l.strip()) for l in lines if l.strip() and not l.strip().startswith("#")]
    return [p if p.is_absolute() else base / p for p in paths]


def rank_and_world() -> tuple[int, int]:
    """This process's share of a batch under torchrun (RANK / WORLD_SIZE), else (0, 1)."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise RefcolorError("RANK and WORLD_SIZE must be integers") from None
    if not 0 <= rank < world:
        raise RefcolorError(f"RANK {rank} out of range for WORLD_SIZE {world}")
    return rank, world


def colorize_batch(source: str | Path, reference, out_dir: str | Path, *, suffix: str = ".mp4", progress: bool = True,
                   **options) -> dict[str, list[Path]]:
    """Colorizes every video of ``source`` that this rank owns into ``out_dir``; returns what was
    done, skipped (already finished) and failed (with the error printed, the others continue)."""
    from .pipeline import colorize

    source, out_dir = Path(source), Path(out_dir)
    videos = list_videos(source)
    if not videos:
        raise RefcolorError(f"no videos found in {source}")
    if out_dir.exists() and not out_dir.is_dir():
        raise RefcolorError(f"batch output must be a folder: {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = rank_and_world()
    report: dict[str, list[Path]] = {"done": [], "skipped": [], "failed": []}
    for i, video in enumerate(videos):
        if i % world != rank:
            continue
        target = out_dir / (video.stem + suffix)
        work = work_path(target)
        if target.exists() and not options.get("overwrite"):
            report["skipped"].append(video)
            continue
        try:
            colorize(video, reference, target, progress=progress, resume=work.is_dir(), **options)
            report["done"].append(video)
        except RefcolorError as err:
            print(f"refcolor: {video}: {err}", flush=True)
            report["failed"].append(video)
    return report
