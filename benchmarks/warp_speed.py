"""The default model (``warp``) before and after this issue's two inference changes, same run.

    nice -n 15 python benchmarks/warp_speed.py --max-frames 24      # ~10 min here, one thread

On the first ``--max-frames`` frames of each davis16-dev sequence (216x384, area resampling,
reference = the first frame, input = the gray frames, as ``refcolor evaluate``), ``Colorizer("warp")``
runs four variants, interleaved sequence by sequence (the order rotates) in one process:

* ``before``: denormals kept and ``nonlocal_warp``'s inference as it was (1024-row chunks through
  the autograd code, ``_warp_fp32``): the code before this work;
* ``flush``: ``Colorizer``'s denormal flush on (``cpu_math.denormals_flushed``), old chunks;
* ``chunks``: the new inference chunks (``nonlocal_warp``'s ``block``), denormals kept;
* ``both``: as shipped.

Reported: network ms/frame (``Colorizer.timings["model"]``) and process CPU ms/frame, ratio to
``before``; PSNR and colorfulness (COLOR) against the ground truth (the issue's quality rule: at
most 0.05 dB and 1 % from ``before``), and the largest difference from ``before`` on RGB uint8.
``--blocks`` adds ``both`` with other ``block`` sizes. Writes benchmarks/results/warp_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np

from common import ROOT, davis16_dev_sequences, machine, machine_line, set_threads, table, write_results

DATA = ROOT.parent / "shared" / "data" / "davis16-dev"
SIZE = (216, 384)


def old_inference(query, key, value, tau):
    """``nonlocal_warp`` before this work, for inference: the autograd code in 1024-row chunks."""
    from refcolor.models.correspondence import _warp_fp32

    return _warp_fp32(query.float(), key.float(), value.float(), tau)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-frames", type=int, default=24)
    parser.add_argument("--sequences", nargs="+", default=None)
    parser.add_argument("--blocks", nargs="*", type=int, default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="warp_speed")
    args = parser.parse_args()
    set_threads(args.threads)
    import refcolor.models.warp as warp_module
    from refcolor.eval.baselines import gray_from_rgb
    from refcolor.eval.metrics import colorfulness, mean_psnr, psnr
    from refcolor.eval.runner import load_sequence
    from refcolor.inference import Colorizer
    from refcolor.models.correspondence import nonlocal_warp

    seqs = davis16_dev_sequences(DATA, args.sequences)
    variants = {"before": (False, old_inference), "flush": (True, old_inference),
                "chunks": (False, nonlocal_warp), "both": (True, nonlocal_warp)}
    for b in args.blocks:
        variants[f"both, block {b}"] = (True, functools.partial(nonlocal_warp, block=b))
    c = Colorizer("warp", device="cpu", size=SIZE)
    info = machine()
    acc = {name: {"model": 0.0, "cpu": 0.0, "frames": 0, "psnr": [], "color": [], "maxdiff": 0} for name in variants}
    for k, seq in enumerate(seqs):
        gt = load_sequence(seq, SIZE, args.max_frames)
        gray = np.stack([g for i in range(0, len(gt), 16) for g in gray_from_rgb(np.stack(gt[i:i + 16]))])
        c.set_reference(gt[0])
        names = list(variants)
        names = names[k % len(names):] + names[:k % len(names)]  # rotate the order per sequence
        outs = {}
        for name in names:
            flush, warp_fn = variants[name]
            c.flush_denormals = flush
            warp_module.nonlocal_warp = warp_fn
            c.reset_memory()
            c.timings["model"] = 0.0
            cpu = time.process_time()
            outs[name] = np.concatenate([c.step(gray[i:i + c.block_size]) for i in range(0, len(gray), c.block_size)])
            a = acc[name]
            a["cpu"] += time.process_time() - cpu
            a["model"] += c.timings["model"]
            a["frames"] += len(gray)
            a["psnr"].append(mean_psnr([psnr(o, g) for o, g in zip(outs[name], gt)]))
            a["color"].append(float(np.mean([colorfulness(o) for o in outs[name]])))
        warp_module.nonlocal_warp = nonlocal_warp
        for name in variants:
            diff = np.abs(outs[name].astype(np.int16) - outs["before"].astype(np.int16)).max()
            acc[name]["maxdiff"] = max(acc[name]["maxdiff"], int(diff))
        print(seq.name, len(gray), {n: f"{1000 * acc[n]['model'] / acc[n]['frames']:.0f}" for n in variants}, flush=True)
    rows = []
    base = acc["before"]
    for name, a in acc.items():
        rows.append({"variant": name, "frames": a["frames"], "model_ms_per_frame": 1000 * a["model"] / a["frames"],
                     "cpu_ms_per_frame": 1000 * a["cpu"] / a["frames"], "speedup_model": base["model"] / a["model"],
                     "speedup_cpu": base["cpu"] / a["cpu"], "psnr": float(np.mean(a["psnr"])),
                     "color": float(np.mean(a["color"])), "max_diff_uint8": a["maxdiff"]})
    b0 = rows[0]
    body = [[r["variant"], r["frames"], f"{r['model_ms_per_frame']:.0f}", f"{r['speedup_model']:.2f}x",
             f"{r['cpu_ms_per_frame']:.0f}", f"{r['speedup_cpu']:.2f}x", f"{r['psnr']:.3f}",
             f"{r['psnr'] - b0['psnr']:+.3f}", f"{r['color']:.2f}", f"{100 * (r['color'] / b0['color'] - 1):+.2f} %",
             r["max_diff_uint8"]] for r in rows]
    md = [machine_line(info), "",
          f"`warp` on davis16-dev ({len(seqs)} sequences, first {args.max_frames} frames each, {SIZE[0]}x{SIZE[1]}, "
          f"blocks of {c.block_size}), variants interleaved in one process:", "",
          table(["variant", "frames", "network ms/frame", "vs before", "CPU ms/frame", "vs before", "PSNR",
                 "Δ PSNR", "COLOR", "Δ COLOR", "max abs Δ, RGB uint8"], body)]
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
