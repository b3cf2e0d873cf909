"""Score checkpoints on a training run's own validation set (never davis16-dev), to choose one.

    python tools/val_checkpoints.py --run runs/lite-v2 A.safetensors B.safetensors ...

Rebuilds the run's validator from its config.json (val_data + val_holdout, size, frames) in a
scratch folder (the warp baseline is copied from the run when it matches), and prints, per
checkpoint, the mean validation PSNR, colorfulness and best warp head against the warp baseline.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="training run whose validation set is used")
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from refcolor.checkpoint import load_model
    from refcolor.train.recipe import TrainConfig
    from refcolor.train.sources import discover
    from refcolor.train.validate import build_validator

    saved = json.loads((args.run / "config.json").read_text())
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in saved.get("train", saved).items() if k in fields})
    holdout = discover(list(cfg.data), min_frames=cfg.block_size, force=cfg.force_data,
                       exclude=tuple(cfg.val_holdout)).held_out
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("val_baseline.json", "val_baseline_frames.npz"):
            if (args.run / name).is_file():
                shutil.copy(args.run / name, tmp)
        validator = build_validator(cfg, holdout, Path(tmp), torch.device("cpu"))
        base = validator.baseline["mean"]
        print(f"validation clips: {[n for n, _ in validator.clips]}; warp {base['psnr']:.3f} dB, color {base['color']:.2f}")
        for step, ckpt in enumerate(args.checkpoints):
            model = load_model(ckpt)
            mean = validator.run(model, step)["mean"]
            print(f"{ckpt}: PSNR {mean['psnr']:.3f} dB ({mean['psnr'] - base['psnr']:+.3f} vs warp), "
                  f"color {mean['color']:.2f}, best head {mean['heads_psnr']:.3f}", flush=True)


if __name__ == "__main__":
    main()
