"""Resumable colorization: segments, a work folder beside the output, and the final join.

A video output is encoded in segments of ``segment_frames`` frames. After each segment the
work folder (``.NAME.refcolor-work/`` beside the output) records it in ``state.json`` together
with the linkage memory at that point (``memory.safetensors``), both written atomically. After
an interruption (Ctrl-C, kill, power loss) ``--resume`` continues at the first missing
segment with the same memory, so the result is frame for frame the one of an uninterrupted
run (which goes through the same segments). At the end the segments' packets are joined
without re-encoding, the input's audio is added, and the work folder is removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from .errors import RefcolorError, option
from .heap import release_free_memory
from .video import VIDEO_SUFFIXES

STATE_VERSION = 1


def run_signature(input_path: Path, settings: dict) -> str:
    """What must not change between a run and its resumption: the input file and the settings."""
    st = input_path.stat()
    data = {"input": str(input_path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns, **settings}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


WORK_SUFFIX = ".refcolor-work"  # the work folder of OUTPUT is .OUTPUT.refcolor-work beside it


def work_path(output: Path) -> Path:
    """The hidden work folder of a resumable run writing ``output`` (batch and colorize alike)."""
    return output.parent / f".{output.name}{WORK_SUFFIX}"


class WorkFolder:
    def __init__(self, output: Path, signature: str) -> None:
        self.path = work_path(output)
        self.signature = signature
        self.segments: list[dict] = []
        self.replaces = False  # the run was asked to replace an existing output (--overwrite)

    @property
    def next_frame(self) -> int:
        return sum(s["frames"] for s in self.segments)

    def exists(self) -> bool:
        return self.path.is_dir()

    def start(self, replaces: bool = False) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        self.segments = []
        self.replaces = replaces
        self._write_state()

    def load(self) -> torch.Tensor | dict[str, torch.Tensor] | None:
        """Reads the state of an interrupted run; returns the memory it saved (a tensor or a dict)."""
        try:
            state = json.loads((self.path / "state.json").read_text())
        except (OSError, ValueError):
            raise RefcolorError(f"cannot resume: {self.path} has no readable state; rerun without --resume") from None
        if state.get("version") != STATE_VERSION or state.get("signature") != self.signature:
            raise RefcolorError(f"cannot resume: {self.path} belongs to another input or other settings; rerun without --resume")
        self.segments = [s for s in state["segments"] if (self.path / s["file"]).is_file()]
        self.replaces = bool(state.get("replaces", False))
        memory_file = self.path / "memory.safetensors"
        if state.get("memory") and self.segments:
            saved = load_file(str(memory_file))
            if "memory" in saved:
                return saved["memory"]
            return {k.removeprefix("memory."): v for k, v in saved.items()}  # a memory of several tensors
        return None

    def segment_path(self, suffix: str) -> Path:
        return self.path / f"segment_{len(self.segments):05d}{suffix}"

    def commit(self, segment: Path, start: int, frames: int, first_pts: int | None, time_base, memory) -> None:
        """Records a finished segment and the memory after it (atomic: state written last)."""
        if memory is not None:
            tmp = self.path / ".memory.partial"
            parts = {f"memory.{k}": v for k, v in memory.items()} if isinstance(memory, dict) else {"memory": memory}
            save_file({k: v.detach().cpu().contiguous() for k, v in parts.items()}, str(tmp))
            os.replace(tmp, self.path / "memory.safetensors")
        tb = Fraction(time_base) if time_base is not None else None
        self.segments.append({"file": segment.name, "start": start, "frames": frames, "first_pts": first_pts,
                              "time_base": str(tb) if tb is not None else None})
        self._write_state(memory is not None)

    def _write_state(self, has_memory: bool = False) -> None:
        tmp = self.path / ".state.partial"
        tmp.write_text(json.dumps({"version": STATE_VERSION, "signature": self.signature,
                                   "segments": self.segments, "memory": has_memory, "replaces": self.replaces},
                              indent=1))
        os.replace(tmp, self.path / "state.json")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def open_video_output(output: Path, signature: str, *, resume: bool, overwrite: bool, **writer_kwargs):
    """The work folder of a video output and a writer of its segments: a new run, or with
    ``resume`` the interrupted one continued. Returns (writer, work folder, first frame still to
    colorize, the linkage memory saved at that frame or None)."""
    work = WorkFolder(output, signature)
    memory, skip = None, 0
    if resume and work.exists():
        memory = work.load()  # refuses a work folder of another input or other settings
        if output.exists() and not (overwrite or work.replaces):
            raise RefcolorError(f"cannot resume: {output} already exists and the run in {work.path} was not started "
                                f"to replace it ({option('use --overwrite', 'pass overwrite=True')} to start over)")
        skip = work.next_frame
    elif work.exists() and not overwrite:
        raise RefcolorError(f"an interrupted run left {work.path}: {option('add --resume', 'pass resume=True')} to "
                            f"continue it, or {option('--overwrite', 'overwrite=True')} to start over")
    else:
        work.start(replaces=output.exists())
    return SegmentWriter(work, output.suffix.lower(), **writer_kwargs), work, skip, memory


def open_output(output: Path, input_path: Path, settings: Callable[[], dict], *, resume: bool, overwrite: bool,
                **writer_kwargs):
    """The writer of ``colorize``'s output, as ``open_video_output`` returns it. A video suffix: the
    segments of a work folder, whose signature is the input and ``settings()`` (called only here),
    continued with ``resume``. Any other path: a frame folder, no work folder (``resume`` applies to
    videos only); an existing folder is replaced by the writer once the new one is complete."""
    from .video_write import FrameFolderWriter

    if output.suffix.lower() in VIDEO_SUFFIXES:
        return open_video_output(output, run_signature(input_path, settings()), resume=resume, overwrite=overwrite,
                                 **writer_kwargs)
    if output.exists() and not overwrite:
        raise RefcolorError(f"output already exists: {output} ({option('use --overwrite', 'pass overwrite=True')} to replace it)")
    return FrameFolderWriter(output, replace=True, **writer_kwargs), None, 0, None


def join_segments(work: WorkFolder, output: Path, audio_from: Path | None) -> None:
    """Joins the segments' video packets (no re-encoding), adds audio, renames onto ``output``."""
    from .video_join import join_videos

    parts = [(work.path / seg["file"], seg["first_pts"], seg.get("time_base")) for seg in work.segments]
    join_videos(parts, output, audio_from)


class SegmentWriter:
    """Writer interface (``write``/``abort``) over segment files in a ``WorkFolder``."""

    def __init__(self, work: WorkFolder, suffix: str, **writer_kwargs) -> None:
        self.work = work
        self.suffix = suffix
        self.kwargs = {k: v for k, v in writer_kwargs.items() if k != "audio_from"}
        self.current = None

    def write(self, rgb, pts: int | None = None) -> None:
        from .video_write import VideoWriter

        if self.current is None:
            self.path = self.work.segment_path(self.suffix)
            self.current = VideoWriter(self.path, **self.kwargs)
            self.first_pts, self.frames = pts, 0
        self.current.write(rgb, pts=pts)
        self.frames += 1

    def end_segment(self, memory) -> None:
        if self.current is None:
            return
        self.current.close()
        self.work.commit(self.path, self.work.next_frame, self.frames, self.first_pts, self.kwargs.get("time_base"), memory)
        self.current = None
        release_free_memory()  # the closed encoder's look-ahead goes back to the system (heap.py)

    def abort(self) -> None:
        """Drops the unfinished segment only: finished ones stay for ``--resume``."""
        if self.current is not None:
            self.current.abort()
            self.current = None
