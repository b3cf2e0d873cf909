"""Checkpoints of a run: model (safetensors, config in metadata) + our own training state.

Layout under ``<run>/checkpoints/``: ``step-NNNNNN/model.safetensors`` (raw weights) and
``step-NNNNNN/state.pt`` (optimisers, discriminator, EMA weights, RNG states, step, samples
consumed, best validation PSNR), written
into a temporary folder and renamed, then ``latest`` (the folder's name) replaced atomically; so
an interruption at any moment leaves the previous checkpoint intact. ``state.pt`` holds only
tensors and plain Python values and is read back with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import read_checkpoint, save_model
from ..errors import RefcolorError


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    rest = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), rest[0], rest[1], rest[2]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    folder = pointer.parent / pointer.read_text().strip()
    if not (folder / "model.safetensors").is_file() or not (folder / "state.pt").is_file():
        raise RefcolorError(f"checkpoint {folder} named by {pointer} is incomplete")
    return folder


def save_checkpoint(run_dir: Path, step: int, model, state: dict, keep: int = 2, export=None) -> Path:
    """``model``: the raw training weights (resume); ``export`` (default ``model``, e.g. the EMA
    weights): what ``<run>/model.safetensors`` holds."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:06d}"
    tmp = root / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, tmp / "model.safetensors", metadata={"step": str(step)})
    torch.save(state, tmp / "state.pt")
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / ".latest.partial"
    pointer_tmp.write_text(name)
    os.replace(pointer_tmp, root / "latest")
    olds = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name != name)
    for old in olds[: max(0, len(olds) - max(keep, 1) + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    save_model(export if export is not None else model, Path(run_dir) / "model.safetensors", metadata={"step": str(step)})
    return final


def load_checkpoint(folder: Path, model) -> dict:
    """Load weights into ``model`` (exact tensors) and return the training state dict."""
    _, tensors, meta = read_checkpoint(folder / "model.safetensors")
    own = model.state_dict()
    if set(own) != set(tensors):
        raise RefcolorError(f"{folder}: checkpoint weights do not match the run's model config")
    model.load_state_dict(tensors, strict=True)
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:
        raise RefcolorError(f"cannot read training state {folder / 'state.pt'}: {err}") from None
    if str(state.get("step")) != meta.get("step"):
        raise RefcolorError(f"{folder}: model (step {meta.get('step')}) and state (step {state.get('step')}) disagree")
    return state
