"""The web app's back end, without Gradio: checks a request, queues its job, describes it.

Every button of the page maps to one ``submit_*`` method here. The checks run at once, in the
request's thread (a bad upload is answered in a second, not after the queue), and raise
``RefcolorError`` with the CLI's one-line message; the work itself runs in the job queue.
Keeping this layer free of Gradio lets the tests drive the same code the page drives.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import RefcolorError
from .jobs import CANCELLED, DONE, FAILED, QUEUED, Job, JobQueue
from .tasks import (SHOT_MODES, JobSpec, available_models, default_model, demo_inputs, parse_shot_references,
                    run_colorize, run_preview, run_shots)
from .uploads import Limits, display_name, import_references, import_video, user_names

Upload = str | os.PathLike


def _one(upload: Upload | Sequence[Upload] | None) -> Upload | None:
    if isinstance(upload, (list, tuple)):
        return upload[0] if upload else None
    return upload


def _many(uploads: Upload | Sequence[Upload] | None) -> list[Upload]:
    if uploads is None:
        return []
    return [uploads] if isinstance(uploads, (str, os.PathLike)) else list(uploads)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class App:
    """State of one running app: limits, the job queue and a cache of loaded models."""

    def __init__(self, root: str | Path, limits: Limits | None = None, keep_minutes: float = 60.0) -> None:
        self.root = Path(root)
        self.limits = limits or Limits()
        self.queue = JobQueue(self.root / "jobs", keep_seconds=keep_minutes * 60)
        self._models: dict[str, Any] = {}
        self._models_lock = threading.Lock()
        self._demo_lock = threading.Lock()  # two pages pressing the demo button write one file

    # -- models ------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return available_models()

    def default_model(self) -> str:
        default = default_model()
        models = self.models()
        return default if default in models else models[0]

    def load_model(self, name: str):
        """A model loaded once per process (previews start in a second, not after loading)."""
        from ..checkpoint import load_model

        with self._models_lock:
            if name not in self._models:
                self._models[name] = load_model(name)
            return self._models[name]

    # -- requests ----------------------------------------------------------------------------
    def _spec(self, job: Job, names: dict[Path, str], video: Upload | None, references: Sequence[Upload],
              model: str | None, size: str | None, shots: str | None, shot_references: str | None) -> JobSpec:
        from ..inference import parse_size

        model = model or self.default_model()
        if model not in self.models():
            raise RefcolorError(f"unknown model {model!r}; this app offers {', '.join(self.models())}")
        shots = shots or SHOT_MODES[0]
        if shots not in SHOT_MODES:
            raise RefcolorError(f"unknown shots mode {shots!r}; use one of {', '.join(SHOT_MODES)}")
        work = parse_size(size.strip()) if size and size.strip() else None
        if video is None:
            raise RefcolorError("upload a gray video first (or press 'Use the demo clip')")
        video_path = import_video(video, job.folder, self.limits, names)
        ref_paths = import_references(references, job.folder, self.limits, names)
        starts = parse_shot_references(shot_references or "", len(ref_paths)) if shots == "per shot" else {}
        return JobSpec(video_path, ref_paths, model, work, shots, starts)

    def _submit(self, kind: str, run, video, references, model, size, shots, shot_references) -> Job:
        names: dict[Path, str] = {}
        holder: dict[str, JobSpec] = {}

        def prepare(job: Job) -> None:
            holder["spec"] = self._spec(job, names, _one(video), _many(references), model, size, shots, shot_references)

        def work(job: Job):
            with user_names(names):
                return run(job, holder["spec"])

        return self.queue.submit(work, kind, prepare)

    def submit_preview(self, video: Upload | None, references: Sequence[Upload] | Upload | None, model: str | None = None,
                       size: str | None = None, shots: str | None = None, shot_references: str | None = None) -> Job:
        """A few frames spread over the video, colorized in seconds (result: gallery items)."""
        return self._submit("preview", lambda job, spec: run_preview(job, spec, self.load_model),
                            video, references, model, size, shots, shot_references)

    def submit_colorize(self, video: Upload | None, references: Sequence[Upload] | Upload | None, model: str | None = None,
                        size: str | None = None, shots: str | None = None, shot_references: str | None = None) -> Job:
        """The whole video through ``refcolor.colorize`` (result: the output .mp4's path)."""
        return self._submit("colorize", run_colorize, video, references, model, size, shots, shot_references)

    def submit_shots(self, video: Upload | None, references: Sequence[Upload] | Upload | None = None) -> Job:
        """Shot detection (result: gallery items and a per-shot reference table)."""
        names: dict[Path, str] = {}
        holder: dict[str, Any] = {}

        def prepare(job: Job) -> None:
            if _one(video) is None:
                raise RefcolorError("upload a gray video first (or press 'Use the demo clip')")
            holder["video"] = import_video(_one(video), job.folder, self.limits, names)
            refs = _many(references)
            holder["refs"] = import_references(refs, job.folder, self.limits, names) if refs else []

        def work(job: Job):
            with user_names(names):
                return run_shots(job, holder["video"], holder["refs"])

        return self.queue.submit(work, "shots", prepare)

    def demo(self) -> tuple[Path, Path]:
        """The bundled demo clip (gray) and its color reference."""
        with self._demo_lock:
            return demo_inputs(self.root / "demo")

    # -- reporting ---------------------------------------------------------------------------
    def describe(self, job: Job) -> str:
        """One status line for the page."""
        if job.state == QUEUED:
            ahead = self.queue.position(job) - 1
            return f"queued: position {ahead + 1} in line ({ahead} job{'s' if ahead != 1 else ''} ahead; one runs at a time)"
        if job.state == FAILED:
            return f"refcolor: error: {job.error}"
        if job.state == CANCELLED:
            return f"{job.kind} cancelled"
        unit = "frames" if job.kind in ("colorize", "preview") else "steps"
        if job.state == DONE and job.kind == "shots":
            return f"shots done: {len(job.result[0])} shot(s) in {(job.finished or 0) - (job.started or 0):.1f} s"
        if job.state == DONE:
            seconds = (job.finished or 0) - (job.started or 0)
            rate = f", {job.rate:.2f} {unit}/s" if job.rate else ""
            return f"{job.kind} done: {job.done} {unit if job.done != 1 else unit[:-1]} in {seconds:.1f} s{rate}"
        if job.cancel_requested:
            return f"{job.kind}: cancelling..."
        if not job.done and not job.total:
            return f"{job.kind}: starting (loading the model, reading the video)..."
        of = f"/{job.total}" if job.total else ""
        if not job.rate:
            return f"{job.kind}: {job.done}{of} {unit} (measuring the speed...)"
        eta = f", ETA {format_duration(job.eta)}" if job.eta is not None else ""
        return f"{job.kind}: {job.done}{of} {unit}, {job.rate:.2f} {unit}/s{eta}"

    def close(self) -> None:
        """Stops the worker and removes the jobs' and the demo's files."""
        import shutil

        self.queue.shutdown()
        shutil.rmtree(self.root / "demo", ignore_errors=True)


def error_line(err: BaseException) -> str:
    """The CLI's one-line form of an error."""
    return f"refcolor: error: {err}"


__all__ = ["App", "Limits", "error_line", "display_name", "format_duration"]
