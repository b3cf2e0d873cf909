"""``colorize``: a video (or frame folder, or image) and color references in, a video out.

Decoding is lazy, frames flow in blocks through a ``Colorizer``, the writer encodes as
they come and carries the input's audio; the output is written to a temporary name beside
the target and renamed only when complete, so an interrupted run leaves no truncated file.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from .background import BlockWriter, ReadAhead
from .errors import Interrupted, RefcolorError, option
from .resume import WorkFolder, join_segments, open_output, work_path
from .inference import Colorizer, parse_size
from .shots import ReferenceMatcher, ReferenceSchedule, build_schedule, detect_shots, format_time, read_references
from .text import plural
from .video import open_source


@dataclass
class ColorizeResult:
    output: Path
    frames: int
    seconds: float
    model: str
    working_size: tuple[int, int]
    # seconds per stage: decode, to_lab, model, to_rgb, encode (busy time of the thread that ran it)
    timings: dict = field(default_factory=dict)

    def summary(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else float("inf")
        h, w = self.working_size
        return f"{plural(self.frames, 'frame')} in {self.seconds:.1f} s ({fps:.2f} frames/s, model {self.model}, working size {h}x{w}) -> {self.output}"


def _check_paths(input_path: Path, output: Path, overwrite: bool, resume: bool = False) -> None:
    if not input_path.exists():
        raise RefcolorError(f"input not found: {input_path}")
    if output.resolve() == input_path.resolve():
        raise RefcolorError("the output path is the input path; refusing to overwrite the input")
    if output.exists() and not overwrite:
        replace = option("use --overwrite", "pass overwrite=True")
        if not resume:
            raise RefcolorError(f"output already exists: {output} ({replace} to replace it)")
        if not work_path(output).is_dir():  # nothing interrupted to continue: never replace a finished output
            raise RefcolorError(f"output already exists and is finished: {output}; {option('--resume', 'resume=True')} only "
                                f"continues an interrupted run and never replaces a finished output ({replace} to replace it)")
    parent = output.resolve().parent
    if not parent.is_dir():
        raise RefcolorError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise RefcolorError(f"output folder is not writable: {parent}")


def colorize(
    input: str | Path,
    reference: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    model: str = "default",
    size: str | tuple[int, int] | None = None,
    block_size: int | None = None,
    device: str = "auto",
    crf: int = 18,
    overwrite: bool = False,
    progress: bool = True,
    upsample: str = "bilinear",
    shots: str | None = None,
    resume: bool = False,
    segment_frames: int = 480,
    threads: bool = True,
    compile: bool = False,
    amp: str | None = None,
    backend: str = "torch",
    on_progress: Callable[[int, int], None] | None = None,
) -> ColorizeResult:
    """Colorize ``input`` with the color ``reference`` photo(s) into ``output``.

    ``output`` with a video suffix (.mp4 .mov .mkv .avi .webm) gets H.264 video with the
    input's frame rate, timestamps and audio; any other path becomes a folder of PNG frames.
    A reference may be ``START:PATH`` (START a frame index or ``[HH:]MM:SS[.s]``): it is used
    from there on. ``shots="auto"`` detects scene cuts, resets the linkage memory at each and,
    given several references without starts, picks the best-matching one per shot.
    Video outputs are encoded in segments of ``segment_frames`` frames kept in a work folder
    beside the output until the end, so ``resume=True`` continues an interrupted run.
    ``threads``: decode, and up-sample + encode, in background threads beside the network
    (same output either way); ``compile``, ``amp`` and ``backend`` go to ``Colorizer``.
    ``on_progress(done, total)`` is called after each block (total 0 when unknown), e.g. by the
    web app for its progress bar; an exception it raises stops the run like Ctrl-C does.
    """
    input_path, output = Path(input), Path(output)
    _check_paths(input_path, output, overwrite, resume)
    if segment_frames < 1:
        raise RefcolorError(f"{option('--segment', 'segment_frames')} must be at least 1 frame")
    refs = _References(*read_references(reference, "at least one --reference is needed"))
    if shots not in (None, "none", "auto"):
        raise RefcolorError(f"unknown {option('--shots', 'shots')} {shots!r}; use auto or none")
    colorizer = Colorizer(model, device=device, size=_working_size(size), block_size=block_size, upsample=upsample,
                          compile=compile, amp=amp, backend=backend)
    start = time.perf_counter()
    with open_source(input_path) as source:
        info = source.info
        refs.plan(input_path, info.fps, shots, colorizer.device, progress)
        colorizer.set_reference(refs.at(0))
        settings = lambda: _resume_settings(model, colorizer, refs, crf=crf, shots=shots,  # noqa: E731
                                            upsample=upsample, segment=segment_frames, amp=amp, backend=backend)
        writer, work, skip, memory = open_output(output, input_path, settings, resume=resume, overwrite=overwrite, fps=info.fps,
                                                 width=info.width, height=info.height, crf=crf, time_base=info.time_base)
        if work is not None:  # a video output: continue where the work folder stopped (frame 0 when new)
            colorizer.set_reference(refs.at(skip))
            colorizer.restore_memory(memory)
        run = _Run(colorizer, refs, BlockWriter(writer, threaded=threads), work, skip, segment_frames)
        frames = ReadAhead(source, threaded=threads)
        run.report = None if on_progress is None else (lambda done: on_progress(done, info.num_frames or 0))
        run.bar = tqdm(total=info.num_frames, initial=skip, unit="frame", disable=not progress, desc="colorize", dynamic_ncols=True)
        _colorize_frames(run, frames, input_path)
        _finish_output(run, output, input_path if info.has_audio else None)
    timings = {"decode": frames.seconds, **colorizer.timings, "encode": run.writer.seconds}
    return ColorizeResult(output, run.count, time.perf_counter() - start, colorizer.model_name, tuple(colorizer.size), timings)


def _working_size(size: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``HxW`` or (h, w) -> the working size, rounded to multiples of 8 with a note when it changes."""
    work = parse_size(size) if isinstance(size, str) else size
    if isinstance(size, str) and tuple(int(v) for v in size.lower().split("x")) != work:
        print(f"note: working size {size} rounded to {work[0]}x{work[1]} (the network takes multiples of 8)", file=sys.stderr)
    return work


@dataclass
class _References:
    """The color references (``START:PATH`` specs read as images) and which of them each frame uses."""

    specs: list[tuple]  # (start or None, path)
    images: list[np.ndarray]
    schedule: ReferenceSchedule | None = None
    boundaries: set[int] = field(default_factory=set)  # frames where the references change

    def plan(self, input_path: Path, fps, shots: str | None, device, progress: bool) -> None:
        """The schedule: the references' starts, and with ``shots="auto"`` the shots of the input
        (several references without starts: the best-matching one per shot)."""
        shot_list = detect_shots(input_path, progress=progress) if shots == "auto" else None
        timed = any(start is not None for start, _ in self.specs)
        matcher = ReferenceMatcher(self.images, device) if shot_list and len(self.images) > 1 and not timed else None
        self.schedule = build_schedule([start for start, _ in self.specs], fps, shot_list, matcher.best if matcher else None)
        self.boundaries = self.schedule.boundaries()
        if shot_list and progress:  # what --shots auto found, and the reference(s) each shot gets
            names = [Path(p).name for _, p in self.specs]
            for s in shot_list:
                used = self.schedule.at(s.start)
                print(f"shot {s.index}: frames {s.start}-{s.end - 1} from {format_time(s.start_time)}, "
                      f"{'reference' if len(used) == 1 else 'references'} {', '.join(names[i] for i in used)}", file=sys.stderr)

    def at(self, frame: int) -> list[np.ndarray]:
        return [self.images[i] for i in self.schedule.at(frame)]


def _resume_settings(model, colorizer: Colorizer, refs: _References, *, crf: int, shots: str | None, upsample: str,
                     segment: int, amp: str | None, backend: str) -> dict:
    """What a resumed run must share with the interrupted one, besides the input (``resume.run_signature``)."""
    return dict(model=str(model), model_used=colorizer.model_name, model_file=_file_identity(model),
                size=colorizer.size, block=colorizer.block_size, crf=crf, shots=shots,
                refs=[(s, hashlib.sha1(Path(p).read_bytes()).hexdigest()) for s, p in refs.specs],
                upsample=upsample, segment=segment, **({"amp": amp} if amp else {}),
                **({"backend": backend} if backend != "torch" else {}))


@dataclass
class _Run:
    """A colorization in progress: frames gathered into blocks, colored, written."""

    colorizer: Colorizer
    refs: _References
    writer: BlockWriter
    work: WorkFolder | None  # a video output's work folder (segments, resume); None for a frame folder
    skip: int  # frames colored before an interruption
    segment_frames: int
    bar: tqdm | None = None
    report: Callable[[int], None] | None = None
    count: int = 0  # frames colored by this run
    block: list = field(default_factory=list)

    def flush(self) -> None:
        if self.block:
            self.count += _flush(self.colorizer, self.block, self.writer, self.bar, self.report)

    def add(self, frame) -> None:
        if frame.index < self.skip:  # done before the interruption
            return
        if self.work is not None and frame.index > self.skip and frame.index % self.segment_frames == 0:
            self.flush()
            self.writer.end_segment(self.colorizer.memory)
        if frame.index in self.refs.boundaries:  # a new shot or reference: never straddle it
            self.flush()
            self.colorizer.set_reference(self.refs.at(frame.index))
        self.block.append(frame)
        if len(self.block) == self.colorizer.block_size:
            self.flush()

    def end(self, input_path: Path) -> None:
        self.flush()
        if self.count + self.skip == 0:
            raise RefcolorError(f"no frames could be decoded from {input_path}")
        if self.work is not None:
            self.writer.end_segment(self.colorizer.memory)


def _colorize_frames(run: _Run, frames: ReadAhead, input_path: Path) -> None:
    """Every frame through ``run``; on any error or Ctrl-C the writer is aborted (a segmented
    video output's finished segments stay for ``--resume``)."""
    try:
        for frame in frames:
            run.add(frame)
        run.end(input_path)
    except BaseException as exc:
        frames.close()
        run.writer.abort()
        if isinstance(exc, KeyboardInterrupt) and run.work is not None and run.work.exists():
            raise Interrupted(run.work.path, run.work.next_frame) from exc  # the CLI says how to --resume
        raise
    finally:
        frames.close()
        run.bar.close()


def _finish_output(run: _Run, output: Path, audio_from: Path | None) -> None:
    """A frame folder is complete when its writer closes; a video's segments are joined (with the
    input's audio) onto ``output`` and the work folder removed."""
    if run.work is None:
        run.writer.close()
        return
    run.writer.finish()
    try:
        join_segments(run.work, output, audio_from)
    except KeyboardInterrupt as exc:
        raise Interrupted(run.work.path, run.work.next_frame) from exc
    run.work.remove()


def _file_identity(model) -> list | None:
    """Size and mtime of a checkpoint file: one retrained at the same path is another model (resume)."""
    if not isinstance(model, (str, Path)):  # a model object (the API, benchmarks): no file
        return None
    path = Path(str(model))
    if not path.is_file():
        return None
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _flush(colorizer: Colorizer, block: list, writer: BlockWriter, bar, report=None) -> int:
    writer.write_block(colorizer.infer([f.rgb for f in block]), [f.pts for f in block])
    bar.update(len(block))
    if report is not None:
        report(block[-1].index + 1)  # frames are numbered from 0 in decoding order
    n = len(block)
    block.clear()
    return n

