"""How far each part of a checkpoint moved from another (its starting point or its initialisation).

    python tools/weight_change.py START.safetensors TRAINED.safetensors [--depth 2]

Prints, per module prefix (the first ``depth`` name parts), the relative L2 change
||trained - start|| / ||start|| over that part's floating-point tensors, and the parts that did
not change at all. A learned part that never leaves its start is a defect (docs/TRAINING.md).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from refcolor.checkpoint import read_checkpoint
from refcolor.errors import RefcolorError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("start")
    p.add_argument("trained")
    p.add_argument("--depth", type=int, default=2)
    args = p.parse_args(argv)
    try:
        _, a, _ = read_checkpoint(args.start)
        _, b, _ = read_checkpoint(args.trained)
    except RefcolorError as err:
        print(f"weight_change: {err}", file=sys.stderr)
        return 1
    diff, norm = defaultdict(float), defaultdict(float)
    for name, t in b.items():
        if name not in a or not t.is_floating_point() or name.endswith(("running_mean", "running_var")):
            continue
        key = ".".join(name.split(".")[: args.depth])
        diff[key] += float((t.float() - a[name].float()).square().sum())
        norm[key] += float(a[name].float().square().sum())
    print(f"{'part':44s} relative change")
    for key in sorted(diff):
        rel = (diff[key] ** 0.5) / max(norm[key] ** 0.5, 1e-12)
        print(f"{key:44s} {rel:.4f}{'   UNCHANGED' if diff[key] == 0 else ''}")
    new = sorted(set(b) - set(a))
    if new:
        print(f"not in START (new parts): {', '.join(new)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
