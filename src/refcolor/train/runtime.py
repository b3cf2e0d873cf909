"""Run-time helpers of the trainer: learning-rate schedule, resume merge, signals, CSV / TensorBoard logs."""
from __future__ import annotations

import copy
import csv
import dataclasses
import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist

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
    that do not alter the model or the data order (steps, intervals, workers, threads, out)."""
    changeable = ("steps", "num_workers", "threads", "val_every", "checkpoint_every", "log_every", "keep_checkpoints", "out", "device")
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


class EMA:
    """Exponential moving average of the generator's weights: what validation scores and what
    ``model.safetensors`` / ``model-best.safetensors`` hold (the raw weights stay in the checkpoints).

    With batch 1 and Adam's beta1 = 0.5 the raw weights oscillate from step to step (measured: the
    plain average of the step-200 and step-300 weights scored 34.77 dB where step 300 alone scored
    33.92). decay_t = min(decay, (1 + t) / (10 + t)) so that early weights are forgotten quickly.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(p, 1.0 - d)
            else:
                e.copy_(p)


def mean_across_ranks(terms: dict, world: int, device) -> dict:
    """The loss terms averaged over DDP ranks (for logging); unchanged in one process."""
    if world == 1:
        return terms
    keys = sorted(terms)
    t = torch.tensor([terms[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool, world: int, device) -> bool:
    """True on every rank when any rank saw ``flag`` (a signal): all ranks stop at the same step."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


# Scalar parameters of the matching (tau, the key mix, the augmented head's alpha): with the
# network's lr 1e-4 they barely move in a CPU budget (alpha went 0.75 -> 0.754 in 2,000 steps),
# so they get their own learning rate ``lr_scalars``.
SCALAR_PARAMS = ("correspondence.tau_logit", "correspondence.key_mix_logit", "correspondence.alpha")


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: trainable backbone (lr_backbone), matching scalars (lr_scalars), the rest (lr)."""
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scalars = [p for n, p in named if n in SCALAR_PARAMS]
    groups = [
        {"params": [p for _, p in named if id(p) in backbone_ids], "base_lr": cfg.lr_backbone},
        {"params": [p for n, p in named if id(p) not in backbone_ids and n not in SCALAR_PARAMS], "base_lr": cfg.lr},
        {"params": scalars, "base_lr": cfg.lr_scalars, "weight_decay": 0.0},
    ]
    return [dict(g, lr=g["base_lr"]) for g in groups if g["params"]]


def load_init_weights(model: torch.nn.Module, path: str, preset: str) -> list[str]:
    """Start from a refcolor checkpoint. Parameters the checkpoint lacks keep their
    initialisation only if they belong to parts that the older architecture did not have
    (learned key projection, key mix, learned tau); anything else must match. Returns the
    names left at initialisation (logged by the caller)."""
    from ..checkpoint import read_checkpoint
    from ..errors import RefcolorError

    _, tensors, _ = read_checkpoint(path)
    new_parts = ("correspondence.key_proj.", "correspondence.key_mix_logit", "correspondence.tau_logit")
    try:
        result = model.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        raise RefcolorError(f"init_from {path}: weights do not fit preset {preset}: {str(err)[:200]}") from None
    bad = [k for k in result.missing_keys if not k.startswith(new_parts)] + list(result.unexpected_keys)
    if bad:
        raise RefcolorError(f"init_from {path}: weights do not fit preset {preset}: {', '.join(bad[:5])}")
    if result.missing_keys:
        print(f"init_from {path}: new parts start at their initialisation: {', '.join(result.missing_keys)}", flush=True)
    return list(result.missing_keys)
