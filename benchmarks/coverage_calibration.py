"""Calibrates ``refcolor.coverage.COVERAGE_THRESHOLD`` on davis16-dev against the warp's error.

Protocol (as ``refcolor evaluate``): every frame at 216x384 (area), input = its CIELAB L, reference =
frame 0 in color. For every frame the training-free ``warp`` model gives its chroma W and the
similarity S = max_j M (Eq. 3) on the h/4 grid. Measured:

* per frame: chroma error = mean over the 216x384 pixels of |ab_pred - ab_true| (Lab units, L2 over
  a and b), and the uncovered share = fraction of h/4 cells with S < t, for t in a sweep;
* per cell: the chroma error on the h/4 grid (true ab area-pooled), to see how well 1 - S separates
  badly colored cells (error >= HIGH_ERROR) from the rest (ROC AUC, best Youden threshold).

The threshold kept is the one with the highest Pearson correlation between the per-frame uncovered
share and the per-frame error over all frames but the references (pooled over the 10 sequences).
Results: benchmarks/results/coverage_calibration.{json,md}; the S and error maps are cached in
``--cache`` so that a rerun of the sweep takes seconds.

    OMP_NUM_THREADS=1 python benchmarks/coverage_calibration.py [--data ../shared/data/davis16-dev]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HIGH_ERROR = 20.0  # Lab ab units: a cell this far off is visibly the wrong color
SWEEP = np.round(np.arange(0.20, 0.951, 0.01), 2)


def measure(data: Path, size=(216, 384), block: int = 4) -> dict[str, dict[str, np.ndarray]]:
    """Per sequence: S maps (N,h4,w4), h/4 error maps (N,h4,w4), per-frame error (N)."""
    import torch
    import torch.nn.functional as F

    from refcolor.color import AB_SCALE, normalize_lab, rgb_to_lab, uint8_to_tensor
    from refcolor.eval.runner import discover_sequences, load_sequence
    from refcolor.models.correspondence import nonlocal_warp
    from refcolor.models.warp import build_warp_model

    model = build_warp_model().eval()
    out = {}
    for seq in discover_sequences(data):
        start = time.perf_counter()
        frames = load_sequence(seq, size)
        with torch.inference_mode():
            ref = model.encode_reference(normalize_lab(rgb_to_lab(uint8_to_tensor(frames[0]))))
            sims, cell_err, frame_err = [], [], []
            for first in range(0, len(frames), block):
                lab = rgb_to_lab(uint8_to_tensor(np.stack(frames[first:first + block])))
                l_n = normalize_lab(lab)[:, :1]
                key, (gh, gw) = model.match_keys(l_n)
                warped, sim = nonlocal_warp(key[None], ref.keys[0], ref.ab[0], model.cfg.tau)
                ab_low = warped[0].reshape(-1, 2, gh, gw) * AB_SCALE
                ab_up = F.interpolate(ab_low, size=size, mode="bilinear", align_corners=False)
                true = lab[:, 1:]
                frame_err.append((ab_up - true).norm(dim=1).mean(dim=(1, 2)).numpy())
                pooled = F.adaptive_avg_pool2d(true, (gh, gw))
                cell_err.append((ab_low - pooled).norm(dim=1).numpy().astype(np.float16))
                sims.append(sim[0, :, 0].reshape(-1, gh, gw).numpy().astype(np.float16))
        out[seq.name] = {"sim": np.concatenate(sims), "cell_err": np.concatenate(cell_err),
                         "frame_err": np.concatenate(frame_err)}
        print(f"{seq.name}: {len(frames)} frames, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return out


def model_errors(data: Path, name: str, size=(216, 384)) -> dict[str, np.ndarray]:
    """Per sequence, the per-frame chroma error of another model (``Colorizer``, memory kept over
    the sequence), to check that the warp's coverage also predicts a trained model's error."""
    import torch

    from refcolor.color import rgb_to_lab, uint8_to_tensor
    from refcolor.eval.runner import discover_sequences, load_sequence
    from refcolor.inference import Colorizer

    colorizer = Colorizer(name, device="cpu", size=size)
    out = {}
    for seq in discover_sequences(data):
        frames = load_sequence(seq, size)
        colorizer.set_reference(frames[0])
        errs = []
        for first in range(0, len(frames), colorizer.block_size):
            # color frames in: the Colorizer keeps only their CIELAB L (the protocol's input)
            pred = colorizer.step(frames[first:first + colorizer.block_size])
            with torch.inference_mode():
                a = rgb_to_lab(uint8_to_tensor(pred))[:, 1:]
                b = rgb_to_lab(uint8_to_tensor(np.stack(frames[first:first + len(pred)])))[:, 1:]
            errs.append((a - b).norm(dim=1).mean(dim=(1, 2)).numpy())
        out[seq.name] = np.concatenate(errs)
        print(f"{name} {seq.name}: {len(frames)} frames", file=sys.stderr)
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def analyse(maps: dict[str, dict[str, np.ndarray]]) -> dict:
    names = sorted(maps)
    skip_ref = lambda a: a[1:]  # frame 0 is the reference itself: trivially covered, no error
    sim = {n: maps[n]["sim"].astype(np.float32) for n in names}
    err = np.concatenate([skip_ref(maps[n]["frame_err"]) for n in names])
    err_all = np.concatenate([maps[n]["frame_err"] for n in names])
    rows = []
    for t in SWEEP:
        share = {n: (sim[n] < t).mean(axis=(1, 2)) for n in names}
        pooled = np.concatenate([skip_ref(share[n]) for n in names])
        within = [pearson(skip_ref(share[n]), skip_ref(maps[n]["frame_err"])) for n in names]
        rows.append({"threshold": float(t), "pearson": pearson(pooled, err),
                     "pearson_with_reference_frames": pearson(np.concatenate([share[n] for n in names]), err_all),
                     "pearson_within_sequence_mean": float(np.nanmean(within)) if np.isfinite(within).any() else float("nan"),
                     "mean_uncovered_share": float(pooled.mean())})
    best = max((r for r in rows if np.isfinite(r["pearson"])), key=lambda r: r["pearson"])
    t = best["threshold"]
    s_cells = np.concatenate([skip_ref(sim[n]).ravel() for n in names])
    e_cells = np.concatenate([skip_ref(maps[n]["cell_err"]).astype(np.float32).ravel() for n in names])
    high = e_cells >= HIGH_ERROR
    below = s_cells < t
    youden = max(SWEEP, key=lambda u: (s_cells[high] < u).mean() - (s_cells[~high] < u).mean())
    from refcolor.coverage import FLAG_SHARE

    share_t = np.concatenate([skip_ref((sim[n] < t).mean(axis=(1, 2))) for n in names])
    flagged = share_t >= FLAG_SHARE
    flag = {"flag_share": FLAG_SHARE, "frames_flagged": int(flagged.sum()),
            "mean_error_flagged": float(err[flagged].mean()) if flagged.any() else float("nan"),
            "mean_error_unflagged": float(err[~flagged].mean())}
    per_seq = {}
    for n in names:
        share = skip_ref((sim[n] < t).mean(axis=(1, 2)))
        per_seq[n] = {"frames": int(len(maps[n]["frame_err"])), "mean_uncovered_share": float(share.mean()),
                      "mean_chroma_error": float(skip_ref(maps[n]["frame_err"]).mean()),
                      "pearson": pearson(share, skip_ref(maps[n]["frame_err"]))}
    return {
        "threshold": t, "frames": int(len(err)), "pearson": best["pearson"],
        "pearson_with_reference_frames": best["pearson_with_reference_frames"],
        "pearson_within_sequence_mean": best["pearson_within_sequence_mean"],
        "cells": {"high_error": HIGH_ERROR, "share_high": float(high.mean()),
                  "auc_1_minus_s": roc_auc(-s_cells, high),
                  "uncovered_precision": float(high[below].mean()) if below.any() else float("nan"),
                  "uncovered_recall": float(below[high].mean()),
                  "covered_high_error_rate": float(high[~below].mean()),
                  "mean_error_uncovered": float(e_cells[below].mean()) if below.any() else float("nan"),
                  "mean_error_covered": float(e_cells[~below].mean()), "youden_threshold": float(youden)},
        "flag": flag, "sequences": per_seq, "sweep": rows,
    }


def markdown(r: dict) -> str:
    c = r["cells"]
    lines = [
        "# Coverage threshold on davis16-dev (warp, 216x384, reference = frame 0)", "",
        f"Chosen threshold S < {r['threshold']:.2f} (highest per-frame Pearson). Over {r['frames']} frames "
        f"(all but the 10 reference frames): Pearson(uncovered share, chroma error) = {r['pearson']:.3f} "
        f"({r['pearson_with_reference_frames']:.3f} with the reference frames; mean of the within-sequence "
        f"correlations {r['pearson_within_sequence_mean']:.3f}).", "",
        f"Cells (h/4 grid): {100 * c['share_high']:.1f} % have chroma error >= {c['high_error']:.0f}; "
        f"AUC of 1 - S for them {c['auc_1_minus_s']:.3f}; uncovered cells: {100 * c['uncovered_precision']:.1f} % "
        f"of them high-error (covered: {100 * c['covered_high_error_rate']:.1f} %), recall "
        f"{100 * c['uncovered_recall']:.1f} %; mean error {c['mean_error_uncovered']:.1f} uncovered vs "
        f"{c['mean_error_covered']:.1f} covered; Youden-best cell threshold {c['youden_threshold']:.2f}.", "",
        f"Frames with an uncovered share >= {r['flag']['flag_share']:.2f} (reported as poorly covered): "
        f"{r['flag']['frames_flagged']}, mean chroma error {r['flag']['mean_error_flagged']:.2f} vs "
        f"{r['flag']['mean_error_unflagged']:.2f} for the others.", "",
        *([f"Against the per-frame chroma error of `{r['error_model']['model']}` (mean "
            f"{r['error_model']['mean_chroma_error']:.2f}), the same uncovered share (warp features) correlates "
            f"with r = {r['error_model']['pearson']:.3f} (within-sequence mean "
            f"{r['error_model']['pearson_within_sequence_mean']:.3f}).", ""] if "error_model" in r else []),
        "| sequence | frames | uncovered share | chroma error | Pearson |", "|---|---|---|---|---|",
    ]
    for n, s in r["sequences"].items():
        lines.append(f"| {n} | {s['frames']} | {100 * s['mean_uncovered_share']:.1f} % | "
                     f"{s['mean_chroma_error']:.2f} | {s['pearson']:.3f} |")
    lines += ["", "| threshold | Pearson | with ref. frames | within-seq mean | mean share |", "|---|---|---|---|---|"]
    for row in r["sweep"][::5]:
        lines.append(f"| {row['threshold']:.2f} | {row['pearson']:.3f} | {row['pearson_with_reference_frames']:.3f} | "
                     f"{row['pearson_within_sequence_mean']:.3f} | {100 * row['mean_uncovered_share']:.1f} % |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "davis16-dev"))
    p.add_argument("--cache", default="/tmp/refcolor-coverage-maps.npz", help="S and error maps (reused when present)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--error-model", default=None, metavar="MODEL",
                   help="also correlate the warp's coverage with this model's per-frame error (e.g. lite)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    if cache.is_file():
        flat = np.load(cache)
        maps: dict = {}
        for key in flat.files:
            seq, _, field = key.partition("/")
            maps.setdefault(seq, {})[field] = flat[key]
    else:
        maps = measure(Path(args.data))
        np.savez_compressed(cache, **{f"{s}/{k}": v for s, d in maps.items() for k, v in d.items()})
    result = analyse(maps)
    if args.error_model:
        errors = model_errors(Path(args.data), args.error_model)
        names, t = sorted(maps), result["threshold"]
        share = {n: (maps[n]["sim"].astype(np.float32) < t).mean(axis=(1, 2))[1:] for n in names}
        result["error_model"] = {
            "model": args.error_model, "mean_chroma_error": float(np.concatenate([errors[n][1:] for n in names]).mean()),
            "pearson": pearson(np.concatenate([share[n] for n in names]), np.concatenate([errors[n][1:] for n in names])),
            "pearson_within_sequence_mean": float(np.nanmean([pearson(share[n], errors[n][1:]) for n in names]))}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "coverage_calibration.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "coverage_calibration.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
