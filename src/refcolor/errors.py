"""User-facing errors: one line, no traceback (the CLI prints ``str(err)``).

A message that names an option spells it as the caller does: ``--overwrite`` on the command
line, ``overwrite=True`` in Python (``option``; the CLI runs its commands under ``cli_spelling``).
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path

_CLI: ContextVar[bool] = ContextVar("refcolor_cli_spelling", default=False)


class RefcolorError(Exception):
    """An error caused by the user's input or environment, shown as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a resumable run: ``work`` holds its finished segments (``--resume`` continues)."""

    def __init__(self, work: Path, frames_done: int) -> None:
        super().__init__(str(work))
        self.work, self.frames_done = Path(work), frames_done
        self.needs_resume_flag = True  # False for a batch, which resumes its unfinished videos by itself


def option(flag: str, argument: str) -> str:
    """``flag`` (e.g. ``--overwrite``) under the CLI, else the Python ``argument`` (``overwrite=True``)."""
    return flag if _CLI.get() else argument


@contextlib.contextmanager
def cli_spelling():
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)
