"""Stage 1 of training: the learned matching key on frozen, cached taps (refcolor.train.matching).

    python tools/train_matching.py --init-from src/refcolor/weights/lite.safetensors \
        --data ../shared/data/train --out runs/matching --steps 600

Writes runs/matching/matching-best.safetensors (a whole `lite` checkpoint, best validation PSNR of
head 1's warp) for stage 2: refcolor train --config configs/lite.toml --set init_from=<that file>.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from refcolor.errors import RefcolorError
from refcolor.train.matching import MatchingConfig, MatchingTrainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init-from", required=True, help="checkpoint whose frozen parts fill the cache")
    p.add_argument("--data", action="append", required=True, help="training root (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default="", help="cache folder shared between runs from the same frozen taps (default OUT/cache)")
    for f in dataclasses.fields(MatchingConfig):
        if f.name not in ("init_from", "data", "out") and f.type in ("int", "float"):
            p.add_argument("--" + f.name.replace("_", "-"), type=int if f.type == "int" else float, default=f.default)
    args = vars(p.parse_args(argv))
    try:
        cfg = MatchingConfig(**{k: v for k, v in args.items()})
        result = MatchingTrainer(cfg).fit()
    except RefcolorError as err:
        print(f"train_matching: {err}", file=sys.stderr)
        return 1
    print(f"validation PSNR {result['start']['psnr']:.3f} -> best {result['best_psnr']:.3f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
