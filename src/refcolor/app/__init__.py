"""``refcolor app``: a local web page (Gradio) that colorizes videos with the CLI's pipeline.

- ``jobs``: one background worker, a queue with positions, per-job folders cleaned up later;
- ``uploads``: uploads copied under fixed names, size and duration limits;
- ``tasks``: preview, full colorization, shot detection (the library's own functions);
- ``service``: the back end the page drives, free of Gradio (tests drive it too);
- ``ui`` / ``server``: the page and its offline launch.

Gradio is imported only when the app starts, so ``import refcolor`` stays cheap.
"""
from __future__ import annotations

from .jobs import Job, JobCancelled, JobQueue
from .uploads import Limits

__all__ = ["Job", "JobCancelled", "JobQueue", "Limits"]
