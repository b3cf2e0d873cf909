"""Checkpoints: safetensors with the model config as JSON in the metadata (never pickle).

``load_model`` resolves a model by name or path, explicitly and offline:
``warp`` (training-free), a preset name (the weights shipped in ``refcolor/weights``),
or a path to a ``.safetensors`` file written by ``save_model``. ``default`` is the shipped
``lite`` model when its weights are in the package *and* were exported as the default
(``tools/export_model.py --as-default --report``, metadata ``default = "yes"``), else ``warp``
(decided at call time). The two are separate because shipped weights can be worth offering
(``--model lite``) before they beat ``warp`` on every bar of the default (docs/MODEL.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import PRESETS, WARP_PRESETS, ModelConfig
from .errors import RefcolorError

FORMAT = "refcolor-1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "default"
SHIPPED_DEFAULT = "lite"  # the trained preset that `default` means once its weights are marked so
DEFAULT_FLAG = "default"  # metadata key; "yes" on weights exported with --as-default


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its header only; no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def is_marked_default(path: Path) -> bool:
    """True when ``path`` is a readable checkpoint whose metadata says ``default = "yes"``."""
    try:
        return path.is_file() and read_metadata(path).get(DEFAULT_FLAG) == "yes"
    except (SafetensorError, OSError, ValueError):
        return False


def resolve_default(spec: str | Path) -> str | Path:
    """``default`` -> ``lite`` when the shipped ``lite`` weights are marked as the default, else ``warp``."""
    if str(spec) != DEFAULT_MODEL:
        return spec
    return SHIPPED_DEFAULT if is_marked_default(WEIGHTS_DIR / f"{SHIPPED_DEFAULT}.safetensors") else "warp"


def save_model(model: nn.Module, path: str | Path, dtype: torch.dtype | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights + config atomically (temp file beside the target, then rename)."""
    path = Path(path)
    cfg: ModelConfig = model.cfg
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": cfg.to_json(), **(metadata or {})}
    tmp = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise RefcolorError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        raise RefcolorError(f"{path}: checkpoints load from .safetensors files only (no pickle)")
    try:
        meta = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RefcolorError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise RefcolorError(f"{path}: metadata has no refcolor config (format {meta.get('format')!r}); not a refcolor checkpoint")
    return ModelConfig.from_json(meta["config"]), tensors, meta


def load_model(spec: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> nn.Module:
    """Model by name (``default``, ``warp``, ``lite``, ``paper``) or checkpoint path, in eval mode on ``device``."""
    from .models.network import RefColorNet
    from .models.backbones import build_backbone

    spec_str = str(resolve_default(spec))
    if spec_str in WARP_PRESETS:
        from .models.warp import build_warp_model

        model = build_warp_model(spec_str)
    else:
        if spec_str in PRESETS:
            path = WEIGHTS_DIR / f"{spec_str}.safetensors"
            if not path.is_file():
                raise RefcolorError(f"no trained weights are shipped for preset {spec_str!r} yet; use --model warp or a checkpoint path")
        else:
            path = Path(spec_str)
            if not path.exists() and path.suffix in (".safetensors", ".pt", ".pth", ".ckpt"):
                raise RefcolorError(f"checkpoint not found: {path}")
            if not path.exists():
                raise RefcolorError(f"unknown model {spec_str!r}: not warp, {', '.join(PRESETS)}, or an existing checkpoint file")
        cfg, tensors, _ = read_checkpoint(path)
        cfg = cfg.replace(pretrained=False)  # every weight comes from the checkpoint
        model = RefColorNet(cfg, build_backbone(cfg.backbone, pretrained=False))
        expected = model.state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise RefcolorError(f"{path}: weights do not match its config ({len(missing)} missing, {len(unexpected)} unexpected keys)")
        bad = [k for k in expected if tuple(expected[k].shape) != tuple(tensors[k].shape)]
        if bad:
            raise RefcolorError(f"{path}: tensor {bad[0]} has shape {tuple(tensors[bad[0]].shape)}, expected {tuple(expected[bad[0]].shape)}")
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return model.to(device).eval()
