"""Training pairs per CPU minute of the data loader alone (``ClipDataset``, one thread).

    python benchmarks/train_loader.py [--config configs/lite.toml] [--samples 60]

The dataset of a ``refcolor train --config ... --data ../shared/data/train`` run (hold-out excluded),
its samples drawn in the trainer's order, in two passes over the same keys: cold (empty frame and
flow caches: every short video decoded once, two DIS flows per frame pair computed) and warm (the
same samples again: frames and flows read back from the caches, as in later epochs). CPU time is the
process's own (``time.process_time``), so other jobs on the machine do not count. Also reports the
reference-to-clip gaps of the drawn samples. Writes ``results/train_loader.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, machine, set_threads  # noqa: E402


def run_pass(ds, keys) -> dict:
    cpu, wall, gaps = time.process_time(), time.perf_counter(), []
    for k in keys:
        gaps.append(int(ds[k]["ref_gap"]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"samples": len(keys), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "pairs_per_cpu_min": round(60 * len(keys) / cpu, 1), "gaps": gaps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "lite.toml"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--out", default=str(RESULTS / "train_loader"))
    args = ap.parse_args()
    set_threads(1)
    import cv2

    cv2.setNumThreads(1)
    from refcolor.train.data import ClipDataset, ClipSpec, EpochSampler
    from refcolor.train.recipe import apply, load_config
    from refcolor.train.sources import discover

    cfg = load_config(args.config)
    cfg = apply(cfg, {"data": list(cfg.data) + [args.data]})
    disc = discover(list(cfg.data), min_frames=cfg.block_size, exclude=tuple(cfg.val_holdout),
                    holdout=(cfg.val_holdout_count, cfg.val_min_frames, cfg.val_frames))
    keys = [k for k, _ in zip(EpochSampler(len(ClipDataset(disc.sequences, ClipSpec.from_config(cfg))), cfg.seed),
                              range(args.samples))]
    with tempfile.TemporaryDirectory() as tmp:
        ds = ClipDataset(disc.sequences, ClipSpec.from_config(cfg), seed=cfg.seed, flow="dis",
                         flow_cache=Path(tmp) / "flow", frame_cache=Path(tmp) / "frames")
        cold = run_pass(ds, keys)
        warm = run_pass(ds, keys)
    own = [g for g in cold["gaps"] if g >= 0]
    result = {
        "config": str(Path(args.config).relative_to(ROOT)) if Path(args.config).is_relative_to(ROOT) else args.config,
        "clip_len": cfg.clip_len, "size": [cfg.height, cfg.width], "ref_gap_min": cfg.ref_gap_min,
        "sequences": len(disc.sequences), "held_out": [[s.name, s.num_frames] for s in disc.held_out],
        "cold": {k: v for k, v in cold.items() if k != "gaps"}, "warm": {k: v for k, v in warm.items() if k != "gaps"},
        "gaps": {"own_sequence": len(own), "foreign_or_still": len(cold["gaps"]) - len(own),
                 "min": min(own, default=None), "median": float(np.median(own)) if own else None,
                 "max": max(own, default=None), "share_ge_30": round(float(np.mean([g >= 30 for g in own])), 3) if own else None},
        "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    g = result["gaps"]
    md = [f"# Training loader throughput ({result['config']}, clip {cfg.clip_len} frames at {cfg.height}x{cfg.width}, one thread)", "",
          "| pass | samples | CPU s | wall s | pairs per CPU minute |", "|---|---|---|---|---|",
          *(f"| {name} | {r['samples']} | {r['cpu_s']} | {r['wall_s']} | **{r['pairs_per_cpu_min']}** |"
            for name, r in (("cold (caches empty)", cold), ("warm (caches filled)", warm))), "",
          f"Reference-to-clip gaps of the drawn samples: {g['own_sequence']} from the clip's own sequence "
          f"(min {g['min']}, median {g['median']}, max {g['max']}; {g['share_ge_30']:.0%} at 30 frames or more), "
          f"{g['foreign_or_still']} foreign references or stills.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
