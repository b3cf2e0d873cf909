"""Chroma up-sampling: bilinear vs guided (edge-aware, steered by full-res L), on real frames.

    python benchmarks/upsampling.py [--data ../shared/data/davis16-dev] [--frames 5]

Ground-truth chroma is shrunk to the working size (216x384, area), brought back to full
resolution (480x854) by each method and joined with the true full-res L; PSNR (RGB uint8)
against the original frame measures what the up-sampling alone loses. Writes
benchmarks/results/upsampling.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from refcolor.color import lab_to_rgb, rgb_to_lab, tensor_to_uint8, uint8_to_tensor
from refcolor.convert import guided_upsample
from refcolor.eval.metrics import psnr
from refcolor.video import open_source

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "davis16-dev"))
    parser.add_argument("--frames", type=int, default=5, help="frames per sequence")
    args = parser.parse_args()
    seqs = sorted(p for p in Path(args.data).iterdir() if p.is_dir())
    scores = {"bilinear": [], "guided": []}
    times = {"bilinear": 0.0, "guided": 0.0}
    for seq in seqs:
        with open_source(seq) as source:
            frames = [f.rgb for f in source if f.index < args.frames * 10][:: 10]
        rgb = uint8_to_tensor(np.stack(frames))
        lab = rgb_to_lab(rgb)
        small_ab = F.interpolate(lab[:, 1:], size=(216, 384), mode="area")
        for name in scores:
            start = time.perf_counter()
            if name == "guided":
                ab = guided_upsample(small_ab, lab[:, :1] / 100.0)
            else:
                ab = F.interpolate(small_ab, size=lab.shape[-2:], mode="bilinear", align_corners=False)
            times[name] += time.perf_counter() - start
            out = tensor_to_uint8(lab_to_rgb(torch.cat([lab[:, :1], ab], 1)))
            scores[name] += [psnr(o, f) for o, f in zip(out, frames)]
    n = sum(1 for _ in scores["bilinear"])
    rows = {k: {"psnr": float(np.mean(v)), "ms_per_frame": 1000 * times[k] / n} for k, v in scores.items()}
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "upsampling.json").write_text(json.dumps({"frames": n, "sequences": len(seqs), **rows}, indent=2))
    print(f"{n} frames of {len(seqs)} sequences, 216x384 -> full resolution")
    print("| method | PSNR (dB) | ms per frame |\n|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['psnr']:.2f} | {r['ms_per_frame']:.1f} |")


if __name__ == "__main__":
    main()
