"""Run-time helpers of the trainer: learning-rate schedule, resume merge, signals, CSV / TensorBoard logs."""
from __future__ import annotations

import csv
import dataclasses
import os
import signal
from pathlib import Path

from .recipe import TrainConfig


def lr_factor(cfg: TrainConfig, step: int) -> float:
    passed = sum(step >= int(round(m * cfg.steps)) for m in cfg.lr_milestones)
    return cfg.lr_gamma ** passed


def dist_env(rank, world_size):
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    return int(rank or 0), int(world_size)


def merge_resumed(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """On --resume the saved config wins, except fields the command line changed from the defaults
    that do not alter the model or the data order (steps, intervals, workers, out)."""
    changeable = ("steps", "num_workers", "val_every", "checkpoint_every", "log_every", "keep_checkpoints", "out", "device")
    default = TrainConfig()
    updates = {k: getattr(given, k) for k in changeable if getattr(given, k) != getattr(default, k)}
    return dataclasses.replace(saved, **updates)


def install_signals(flag: dict):
    """SIGINT / SIGTERM ask the loop to stop after the current step (a checkpoint is written)."""
    old = {}

    def handler(signum, _frame):
        flag["stop"] = True
        signal.signal(signum, old.get(signum, signal.SIG_DFL))  # a second signal acts at once

    try:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    except ValueError:  # not the main thread
        return lambda: None

    def restore():
        for s, h in old.items():
            signal.signal(s, h)

    return restore


def append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def truncate_csv(path: Path, step: int) -> None:
    if not path.is_file():
        return
    with path.open() as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(keep)


class TensorBoard:
    """Scalars to TensorBoard event files in ``<run>/tb`` when ``tensorboard`` is installed, else nothing."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: the CSV logs and loss.png carry the same numbers
            self.writer = None
        else:
            self.writer = SummaryWriter(str(Path(run_dir) / "tb"))

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and k != "step":
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
