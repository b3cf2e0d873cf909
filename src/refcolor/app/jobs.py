"""Background jobs for the web app: one worker thread, one job at a time, the rest queued.

Colorizing takes every core the machine has, so two jobs at once would only make both slower;
one worker runs jobs in order and everyone else sees their place in the queue. Each job gets
its own folder under the app's temporary root, removed ``keep_seconds`` after the job ended,
so results stay downloadable for a while and the disk does not fill up on a long-running app.
The queue knows nothing of Gradio or models: it runs callables, which keeps it unit-testable.
"""
from __future__ import annotations

import itertools
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import RefcolorError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobCancelled(Exception):
    """Raised inside a job (from ``Job.report``) when the user pressed Cancel."""


@dataclass
class Job:
    """One unit of work; ``fn(job)`` runs in the worker thread and returns the job's result."""

    id: str
    kind: str
    folder: Path
    fn: Callable[["Job"], Any] = field(repr=False)
    state: str = QUEUED
    result: Any = None
    error: str = ""  # one line, as the CLI would print it, when state is FAILED
    done: int = 0  # progress units (frames) finished
    total: int = 0  # 0 when unknown
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _first_report: tuple[float, int] | None = field(default=None, repr=False)
    _last_report: float = field(default=0.0, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def report(self, done: int, total: int = 0) -> None:
        """Progress from inside the job; raises ``JobCancelled`` once Cancel was pressed."""
        now = time.monotonic()
        if self._first_report is None:
            self._first_report = (now, done)
        self._last_report = now
        self.done, self.total = done, total
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} cancelled")

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} cancelled")

    @property
    def rate(self) -> float:
        """Units per second between the first and the last report (model loading, and the
        muxing after the last frame, are not counted)."""
        if self._first_report is None:
            return 0.0
        t0, d0 = self._first_report
        if self.done > d0 and self._last_report > t0:
            return (self.done - d0) / (self._last_report - t0)
        return 0.0  # one report so far: no honest measure yet

    @property
    def eta(self) -> float | None:
        """Seconds left, or None when the total or the rate is unknown."""
        rate = self.rate
        if not self.total or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job ended; True if it did within ``timeout``."""
        return self._ended.wait(timeout)


class JobQueue:
    """FIFO of jobs served by one daemon worker thread; old job folders are removed."""

    def __init__(self, root: str | Path, keep_seconds: float = 3600.0, sweep_seconds: float = 30.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_seconds = keep_seconds
        self.sweep_seconds = sweep_seconds
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._stop = False
        self._worker = threading.Thread(target=self._serve, name="refcolor-app-worker", daemon=True)
        self._worker.start()

    def submit(self, fn: Callable[[Job], Any], kind: str = "job", prepare: Callable[[Job], None] | None = None) -> Job:
        """Queues ``fn``; ``prepare(job)`` runs first, in the caller's thread, with the job's folder
        created (to copy uploads in and check them); if it raises, nothing is queued."""
        with self._lock:
            if self._stop:
                raise RefcolorError("the app is shutting down")
            job_id = f"{next(self._ids):04d}"
        folder = self.root / f"job-{job_id}"
        folder.mkdir()
        job = Job(job_id, kind, folder, fn)
        if prepare is not None:
            try:
                prepare(job)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
        with self._lock:
            self._jobs[job_id] = job
            self._waiting.append(job)
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while running (or finished), else 1 for the next job to run, 2 after it, ..."""
        with self._lock:
            for i, waiting in enumerate(self._waiting):
                if waiting is job:
                    return i + 1
        return 0

    def cancel(self, job_id: str) -> bool:
        """Cancels a queued job at once, a running one at its next progress report."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED:
                return False
            job._cancel.set()
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._end(job, CANCELLED)
            return True

    def _end(self, job: Job, state: str, error: str = "") -> None:
        job.state, job.error, job.finished = state, error, time.monotonic()
        if state == CANCELLED:  # nothing of a cancelled job is worth keeping
            shutil.rmtree(job.folder, ignore_errors=True)
        job._ended.set()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stop:
                    if not self._lock.wait(timeout=self.sweep_seconds):
                        self._sweep_locked()
                if self._stop:
                    return
                job = self._waiting.popleft()
                job.state, job.started = RUNNING, time.monotonic()
                self._running = job
            state, error, result = DONE, "", None
            try:
                job.check_cancel()
                result = job.fn(job)
            except JobCancelled:
                state = CANCELLED
            except RefcolorError as err:
                state, error = FAILED, str(err)
            except Exception as err:  # the app must keep serving whatever a job does
                state, error = FAILED, f"unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            with self._lock:
                job.result = result
                self._running = None
                self._end(job, state, error)
                self._sweep_locked()

    def sweep(self, now: float | None = None) -> list[str]:
        """Removes jobs that ended more than ``keep_seconds`` ago; returns their ids."""
        with self._lock:
            return self._sweep_locked(now)

    def _sweep_locked(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        old = [j for j in self._jobs.values() if j.finished is not None and now - j.finished >= self.keep_seconds]
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
            del self._jobs[job.id]
        return [j.id for j in old]

    def shutdown(self, remove_root: bool = True) -> None:
        """Stops the worker after the running job (which is asked to cancel) and removes the root."""
        with self._lock:
            self._stop = True
            for job in list(self._waiting):
                job._cancel.set()
                self._end(job, CANCELLED)
            self._waiting.clear()
            if self._running is not None:
                self._running._cancel.set()
            self._lock.notify_all()
        self._worker.join(timeout=30)
        if remove_root:
            shutil.rmtree(self.root, ignore_errors=True)
