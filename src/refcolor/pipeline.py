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

from tqdm import tqdm

from .background import BlockWriter, ReadAhead
from .errors import Interrupted, RefcolorError, option
from .resume import join_segments, open_video_output, run_signature, work_path
from .inference import Colorizer, check_color_reference, parse_size
from .shots import ReferenceMatcher, build_schedule, detect_shots, format_time, parse_reference_spec
from .text import plural
from .video import VIDEO_SUFFIXES, open_source, read_image


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
    from .video_write import FrameFolderWriter

    input_path, output = Path(input), Path(output)
    _check_paths(input_path, output, overwrite, resume)
    if segment_frames < 1:
        raise RefcolorError(f"{option('--segment', 'segment_frames')} must be at least 1 frame")
    refs = [reference] if isinstance(reference, (str, Path)) else list(reference)
    if not refs:
        raise RefcolorError("at least one --reference is needed")
    specs = [parse_reference_spec(str(r)) for r in refs]
    ref_images = []
    for _, ref in specs:
        if not Path(ref).is_file():
            raise RefcolorError(f"reference not found: {ref}")
        ref_images.append(check_color_reference(read_image(ref)))
    if shots not in (None, "none", "auto"):
        raise RefcolorError(f"unknown {option('--shots', 'shots')} {shots!r}; use auto or none")
    work = parse_size(size) if isinstance(size, str) else size
    if isinstance(size, str) and tuple(int(v) for v in size.lower().split("x")) != work:
        print(f"note: working size {size} rounded to {work[0]}x{work[1]} (the network takes multiples of 8)", file=sys.stderr)
    colorizer = Colorizer(model, device=device, size=work, block_size=block_size, upsample=upsample,
                          compile=compile, amp=amp, backend=backend)

    start = time.perf_counter()
    count = 0
    with open_source(input_path) as source:
        info = source.info
        shot_list = detect_shots(input_path, progress=progress) if shots == "auto" else None
        timed = any(start is not None for start, _ in specs)
        matcher = ReferenceMatcher(ref_images, colorizer.device) if shot_list and len(ref_images) > 1 and not timed else None
        schedule = build_schedule([start for start, _ in specs], info.fps, shot_list, matcher.best if matcher else None)
        boundaries = schedule.boundaries()
        if shot_list and progress:  # what --shots auto found, and the reference(s) each shot gets
            names = [Path(p).name for _, p in specs]
            for s in shot_list:
                used = schedule.at(s.start)
                print(f"shot {s.index}: frames {s.start}-{s.end - 1} from {format_time(s.start_time)}, "
                      f"{'reference' if len(used) == 1 else 'references'} {', '.join(names[i] for i in used)}", file=sys.stderr)
        colorizer.set_reference([ref_images[i] for i in schedule.at(0)])
        is_video_out = output.suffix.lower() in VIDEO_SUFFIXES
        kwargs = dict(fps=info.fps, width=info.width, height=info.height, crf=crf, time_base=info.time_base)
        skip, work = 0, None
        if is_video_out:
            settings = dict(model=str(model), model_used=colorizer.model_name, model_file=_file_identity(model),
                            size=colorizer.size, block=colorizer.block_size, crf=crf, shots=shots,
                            refs=[(s, hashlib.sha1(Path(p).read_bytes()).hexdigest()) for s, p in specs],
                            upsample=upsample, segment=segment_frames, **({"amp": amp} if amp else {}),
                            **({"backend": backend} if backend != "torch" else {}))
            writer, work, skip, memory = open_video_output(output, run_signature(input_path, settings), resume=resume,
                                                           overwrite=overwrite, **kwargs)
            colorizer.set_reference([ref_images[i] for i in schedule.at(skip)])
            colorizer.restore_memory(memory)
        else:
            if output.exists() and not overwrite:  # --resume applies to video outputs only
                raise RefcolorError(f"output already exists: {output} ({option('use --overwrite', 'pass overwrite=True')} to replace it)")
            # A frame folder that already exists is replaced only after the new one is complete.
            writer = FrameFolderWriter(output, replace=True, **kwargs)
        writer = BlockWriter(writer, threaded=threads)
        frames = ReadAhead(source, threaded=threads)
        report = None if on_progress is None else (lambda done: on_progress(done, info.num_frames or 0))
        bar = tqdm(total=info.num_frames, initial=skip, unit="frame", disable=not progress, desc="colorize", dynamic_ncols=True)
        try:
            block: list = []
            for frame in frames:
                if frame.index < skip:  # done before the interruption
                    continue
                if work is not None and frame.index > skip and frame.index % segment_frames == 0:
                    if block:
                        count += _flush(colorizer, block, writer, bar, report)
                    writer.end_segment(colorizer.memory)
                if frame.index in boundaries:  # a new shot or reference: never straddle it
                    if block:
                        count += _flush(colorizer, block, writer, bar, report)
                    colorizer.set_reference([ref_images[i] for i in schedule.at(frame.index)])
                block.append(frame)
                if len(block) == colorizer.block_size:
                    count += _flush(colorizer, block, writer, bar, report)
            if block:
                count += _flush(colorizer, block, writer, bar, report)
            if count + skip == 0:
                raise RefcolorError(f"no frames could be decoded from {input_path}")
            if work is not None:
                writer.end_segment(colorizer.memory)
        except BaseException as exc:
            frames.close()
            writer.abort()
            if isinstance(exc, KeyboardInterrupt) and work is not None and work.exists():
                raise Interrupted(work.path, work.next_frame) from exc  # the CLI says how to --resume
            raise
        finally:
            frames.close()
            bar.close()
        if work is not None:
            writer.finish()
            try:
                join_segments(work, output, input_path if info.has_audio else None)
            except KeyboardInterrupt as exc:
                raise Interrupted(work.path, work.next_frame) from exc
            work.remove()
        else:
            writer.close()
    timings = {"decode": frames.seconds, **colorizer.timings, "encode": writer.seconds}
    return ColorizeResult(output, count, time.perf_counter() - start, colorizer.model_name, tuple(colorizer.size), timings)


def _file_identity(model) -> list | None:
    """Size and mtime of a checkpoint file: one retrained at the same path is another model (resume)."""
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

