"""Stage 3 of training: the colorization subnet on traces of the frozen network (refcolor.train.subnet).

    python tools/train_subnet.py --init-from runs/candidate-s6.safetensors \
        --data ../shared/data/train --out runs/subnet --steps 1500 --w-color 0.5

Writes runs/subnet/subnet-best.safetensors (the whole network, only its colorization subnet
changed), runs/subnet/subnet-val.csv (held-out PSNR and colorfulness through the output path of
``Colorizer``) and runs/subnet/subnet-log.csv (loss terms per step).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from refcolor.errors import RefcolorError
from refcolor.train.subnet import SubnetConfig, SubnetTrainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init-from", required=True, help="the whole network whose frozen parts make the traces")
    p.add_argument("--data", action="append", required=True, help="training root (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--traces", default="", help="trace folder shared between runs (default OUT/traces)")
    p.add_argument("--select", default="psnr", choices=["psnr", "color"],
                   help="best checkpoint: highest PSNR (at --color-floor), or most colorful at PSNR >= the start's")
    for f in dataclasses.fields(SubnetConfig):
        if f.name not in ("init_from", "data", "out", "traces", "select") and f.type in ("int", "float"):
            p.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float, default=f.default)
    args = vars(p.parse_args(argv))
    try:
        result = SubnetTrainer(SubnetConfig(**args)).fit()
    except RefcolorError as err:
        print(f"train_subnet: {err}", file=sys.stderr)
        return 1
    start, best = result["start"], result["best"]
    print(f"held-out PSNR {start['psnr']:.3f} -> {best['psnr']:.3f} dB, colorfulness {start['color']:.2f} -> "
          f"{best['color']:.2f} (best at step {best['step']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
