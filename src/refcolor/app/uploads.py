"""Uploads: copied into the job's folder under fixed names, checked against the app's limits.

A browser controls the name of an uploaded file, so that name is never used as a path: the
file is linked or copied to ``input.mp4``, ``ref-0.png``... keeping only a suffix from a short
whitelist (the decoders pick their parser from it). The original name survives only as text,
cleaned, for messages: errors raised on the job's copies are reworded to name the file the
user knows, so the page shows the same one-line message the CLI would have printed.
"""
from __future__ import annotations

import os
import re
import shutil
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import RefcolorError
from ..video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

REFERENCE_SUFFIXES = IMAGE_SUFFIXES + (".webp",)


@dataclass(frozen=True)
class Limits:
    """What one job may bring; set by ``refcolor app --max-upload-mb --max-seconds``."""

    max_upload_mb: float = 2048.0  # per file
    max_seconds: float = 3600.0  # video duration
    max_references: int = 32

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_seconds <= 0 or self.max_references < 1:
            raise RefcolorError("upload limits must be positive")


def display_name(name: str | os.PathLike | None, limit: int = 60) -> str:
    """The last component of a browser-given name, printable, for messages only (never a path)."""
    text = re.split(r"[\\/]", str(name or ""))[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("C", "Z") or ch == " ").strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text or "upload"


def safe_suffix(name: str | os.PathLike, allowed: Sequence[str], what: str) -> str:
    """The lower-case suffix of ``name`` if it is whitelisted, else a one-line error."""
    suffix = Path(re.split(r"[\\/]", str(name))[-1]).suffix.lower()
    if suffix not in allowed:
        raise RefcolorError(f"{display_name(name)}: not a supported {what} file type; use {', '.join(allowed)}")
    return suffix


def _import(src: Path, dst: Path, limits: Limits, shown: str) -> Path:
    """Hard link (same disk: instant, no extra space) or copy ``src`` to ``dst`` after the size check."""
    try:
        size = src.stat().st_size
    except OSError:
        raise RefcolorError(f"{shown}: the upload is missing (upload it again)") from None
    if size == 0:
        raise RefcolorError(f"{shown}: the file is empty")
    if size > limits.max_upload_mb * 1024 * 1024:
        raise RefcolorError(f"{shown} is {size / 2**20:.0f} MB; this app takes files up to "
                            f"{limits.max_upload_mb:g} MB (refcolor app --max-upload-mb)")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


@contextmanager
def user_names(names: dict[Path, str]) -> Iterator[None]:
    """Rewords a RefcolorError raised inside to show user file names instead of job paths."""
    try:
        yield
    except RefcolorError as err:
        text = str(err)
        for path, shown in sorted(names.items(), key=lambda kv: -len(str(kv[0]))):
            text = text.replace(str(path), shown)
        if text == str(err):
            raise
        raise RefcolorError(text) from None


def import_video(upload: str | os.PathLike, folder: Path, limits: Limits, names: dict[Path, str],
                 shown: str | None = None) -> Path:
    """Copies the uploaded video to ``folder/input<suffix>``; checks that it decodes and its length."""
    from ..video import open_source

    upload = Path(upload)
    shown = shown or display_name(upload.name)
    dst = folder / f"input{safe_suffix(shown, VIDEO_SUFFIXES, 'video')}"
    names[dst] = shown
    with user_names(names):
        _import(upload, dst, limits, shown)
        with open_source(dst) as source:
            info = source.info
        duration = info.duration
        if not duration and info.num_frames and info.fps:
            duration = info.num_frames / float(info.fps)
        if duration and duration > limits.max_seconds:
            raise RefcolorError(f"{shown} is {duration:.1f} s long; this app takes videos up to "
                                f"{limits.max_seconds:g} s (refcolor app --max-seconds)")
    return dst


def import_references(uploads: Sequence[str | os.PathLike], folder: Path, limits: Limits,
                      names: dict[Path, str], shown: Sequence[str] | None = None) -> list[Path]:
    """Copies reference photos to ``folder/ref-<i><suffix>``; each must decode and be in color."""
    from ..inference import check_color_reference
    from ..video import read_image

    if not uploads:
        raise RefcolorError("at least one color reference is needed: upload a color photo")
    if len(uploads) > limits.max_references:
        raise RefcolorError(f"{len(uploads)} references uploaded; this app takes at most {limits.max_references}")
    paths = []
    for i, upload in enumerate(uploads):
        upload = Path(upload)
        name = shown[i] if shown else display_name(upload.name)
        dst = folder / f"ref-{i}{safe_suffix(name, REFERENCE_SUFFIXES, 'image')}"
        names[dst] = name
        with user_names(names):
            _import(upload, dst, limits, name)
            check_color_reference(read_image(dst))
        paths.append(dst)
    return paths
