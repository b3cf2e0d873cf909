"""Choose a checkpoint's output chroma gain (``ModelConfig.chroma_gain``) on held-out training sequences.

The trained network washes colors out a little (docs/MODEL.md); a scalar on its output ab is the
cheapest measured means against it. The gain is chosen by a rule fixed before any davis16-dev run:
the largest g of ``--gains`` whose mean PSNR on the held-out sequences is at least PSNR(g = 1) minus
``--tolerance`` dB. The held-out sequences are the training stages' own (``sources.choose_holdout``:
6 sequences of 60-100 frames), reference = first frame, every frame scored, as in evaluation.

    python tools/chroma_gain.py runs/candidate.safetensors [--data ../shared/data/train] \
        [--write runs/candidate-gain.safetensors]

The network runs once per sequence; each gain scales the same ab (the gain acts after everything
the memory keeps, so this equals running a model with that gain). One torch thread.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from refcolor.checkpoint import load_model, save_model
from refcolor.color import gray_from_rgb
from refcolor.convert import to_rgb_uint8
from refcolor.eval.baselines import ModelMethod
from refcolor.eval.metrics import colorfulness, mean_psnr, psnr
from refcolor.eval.runner import load_sequence
from refcolor.train.sources import discover

GAINS = (1.00, 1.02, 1.04, 1.06, 1.08, 1.10)


def held_out_sequences(data: list[str]):
    """The sequences both training stages hold out (count 6, 60-100 frames), chosen from ``data``."""
    return discover(data, min_frames=6, holdout=(6, 60, 100)).held_out


def score_gains(checkpoint: str, seqs, gains, size=(216, 384), max_frames=100) -> dict[float, tuple[float, float]]:
    """{gain: (mean over sequences of the mean PSNR over frames, mean colorfulness)}."""
    method = ModelMethod(checkpoint, device="cpu", size=size)
    colorizer = method.colorizer
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    finish = colorizer._finish

    def keep(lum, ab):  # the full-resolution L and the output ab of each block, before RGB
        captured.append((lum, ab))
        return finish(lum, ab)

    colorizer._finish = keep
    per_seq: dict[float, list[tuple[float, float]]] = {g: [] for g in gains}
    for seq in seqs:
        t0 = time.perf_counter()
        gt = load_sequence(seq, size, max_frames)
        gray = list(gray_from_rgb(np.stack(gt)))
        captured.clear()
        n = sum(1 for _ in method.colorize_sequence(iter(gray), gt[0]))
        assert n == len(gt)
        line = [f"{seq.name} ({len(gt)} frames, {time.perf_counter() - t0:.0f} s):"]
        for g in gains:
            outs = [f for lum, ab in captured for f in to_rgb_uint8(lum, ab * g, colorizer.upsample)]
            p, c = mean_psnr([psnr(o, t) for o, t in zip(outs, gt)]), float(np.mean([colorfulness(o) for o in outs]))
            per_seq[g].append((p, c))
            line.append(f"g={g:.2f} {p:.3f}/{c:.2f}")
        print(" ".join(line), flush=True)
    return {g: (float(np.mean([p for p, _ in v])), float(np.mean([c for _, c in v]))) for g, v in per_seq.items()}


def choose(table: dict[float, tuple[float, float]], tolerance: float) -> float:
    """The largest gain whose PSNR is at least PSNR(g = 1) - tolerance."""
    floor = table[1.0][0] - tolerance
    return max(g for g, (p, _) in table.items() if p >= floor)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", nargs="+", default=["../shared/data/train"])
    p.add_argument("--gains", type=float, nargs="+", default=list(GAINS))
    p.add_argument("--tolerance", type=float, default=0.02, help="PSNR (dB) the gain may cost on the hold-out")
    p.add_argument("--write", help="save the checkpoint with the chosen gain here")
    args = p.parse_args()
    if 1.0 not in args.gains:
        p.error("--gains must include 1.0 (the rule compares with it)")
    torch.set_num_threads(1)
    seqs = held_out_sequences(args.data)
    print(f"hold-out: {', '.join(s.name for s in seqs)}", flush=True)
    table = score_gains(args.checkpoint, seqs, sorted(args.gains))
    print("gain | PSNR | colorfulness")
    for g, (psnr_g, color_g) in table.items():
        print(f"{g:.2f} | {psnr_g:.3f} | {color_g:.2f}")
    gain = choose(table, args.tolerance)
    print(f"chosen gain: {gain:.2f} (largest with PSNR >= {table[1.0][0]:.3f} - {args.tolerance} dB)")
    if args.write:
        model = load_model(args.checkpoint)
        model.cfg = model.cfg.replace(chroma_gain=gain)
        save_model(model, args.write)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
