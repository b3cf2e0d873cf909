"""A portrait reference for a landscape film: does it color its own region as well as the whole frame?

    python benchmarks/portrait_reference.py --sequences blackswan car-roundabout dog --models warp lite

For each DAVIS sequence (../shared/data/davis16-dev, 480x854) the frames are colorized at the
working size 216x384 three times, the reference always made from frame 0:
  whole     frame 0 as it is;
  portrait  the central 9:16 portrait column of frame 0 (480x270), encoded at its own aspect ratio
            and the frames' height, 216x120 (what refcolor does since issue 16), and, for
            comparison, at about the working size's pixel count, 384x216 (``fit="pixels"``);
  squashed  the same column first stretched to 216x384 (what refcolor did before: every
            reference was resized to the working size's shape).
PSNR (RGB, uint8) is computed over the column's region only (columns 131-252 of 384), per frame
for frames 1.., and averaged (and over frames 1-3 alone, before content from outside the column
moves into it). Input frames are the ground-truth frames at 216x384 (the network
reads only their L). One torch thread. Writes benchmarks/results/portrait_reference.{json,md}.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import ROOT, machine, machine_line, set_threads, table, write_results

DAVIS = ROOT.parent / "shared" / "data" / "davis16-dev"
H, W = 216, 384


def resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    from refcolor.color import uint8_to_tensor

    t = F.interpolate(uint8_to_tensor(rgb), size=(h, w), mode="area")
    return (t[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def load(sequence: str, count: int) -> list[np.ndarray]:
    from refcolor.video import read_image

    paths = sorted((DAVIS / sequence).glob("*.jpg"))[:count]
    return [read_image(p) for p in paths]


def run(model, frames: list[np.ndarray], reference: np.ndarray, cols: slice, fit: str = "height") -> tuple[float, float]:
    """(mean PSNR over frames 1.., over frames 1-3 only) in the region ``cols``."""
    from refcolor.eval.metrics import mean_psnr, psnr
    from refcolor.inference import Colorizer

    c = Colorizer(model, size=(H, W), device="cpu")
    c.reference_fit = fit
    c.set_reference(reference)
    small = [resize(f, H, W) for f in frames]
    values = []
    for start in range(1, len(small), c.block_size):
        block = small[start : start + c.block_size]
        out = c.step(np.stack(block))
        values += [psnr(np.ascontiguousarray(o[:, cols]), np.ascontiguousarray(g[:, cols])) for o, g in zip(out, block)]
    return mean_psnr(values), mean_psnr(values[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sequences", nargs="+", default=["blackswan", "car-roundabout", "dog"])
    p.add_argument("--models", nargs="+", default=["warp", "lite"])
    p.add_argument("--frames", type=int, default=50, help="frames per sequence, frame 0 the reference")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    set_threads(args.threads)
    from refcolor.checkpoint import load_model

    info, rows, data = machine(), [], []
    for name in args.models:
        model = load_model(name, torch.device("cpu"))
        for seq in args.sequences:
            frames = load(seq, args.frames)
            fh, fw = frames[0].shape[:2]
            cw = round(fh * 9 / 16)
            x0 = (fw - cw) // 2
            portrait = frames[0][:, x0 : x0 + cw]
            cols = slice(round(x0 * W / fw), round((x0 + cw) * W / fw))
            start = time.perf_counter()
            whole = run(model, frames, frames[0], cols)
            kept = run(model, frames, portrait, cols)
            pixels = run(model, frames, portrait, cols, fit="pixels")
            squashed = run(model, frames, resize(portrait, H, W), cols)
            seconds = time.perf_counter() - start
            data.append(dict(model=name, sequence=seq, frames=len(frames) - 1, crop=[fh, cw], region_cols=[cols.start, cols.stop],
                             whole=whole, portrait=kept, portrait_pixels=pixels, squashed=squashed, seconds=seconds))
            for span, i in ((f"1-{len(frames) - 1}", 0), ("1-3", 1)):
                rows.append([name, seq, span, f"{whole[i]:.2f}", f"{kept[i]:.2f} ({kept[i] - whole[i]:+.2f})",
                             f"{pixels[i]:.2f} ({pixels[i] - whole[i]:+.2f})",
                             f"{squashed[i]:.2f} ({squashed[i] - whole[i]:+.2f})"])
            print(rows[-1], f"{seconds:.0f} s", flush=True)
    md = ("PSNR (dB) over the portrait column's region, reference from frame 0, working size 216x384\n\n"
          + table(["model", "sequence", "frames", "whole frame", "portrait, frames' height (shipped)",
                   "portrait, working pixel count", "portrait squashed to 216x384 (before)"], rows)
          + "\n\n" + machine_line(info))
    write_results("portrait_reference", {"machine": info, "rows": data}, md)


if __name__ == "__main__":
    main()
