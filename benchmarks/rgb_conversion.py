"""The full-resolution Lab -> RGB of ``warp``'s output: kornia (exact, before) against OpenCV (now).

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/rgb_conversion.py --max-frames 24   # a few minutes

Issue 18: ``convert.to_rgb_uint8`` on the CPU now runs in OpenCV, which is not bit-identical to
the former kornia path (``exact=True``). This measures what that costs against the issue's quality
rule (at most 0.05 dB PSNR and 1 % colorfulness on davis16-dev), on the *same network output*:
for the first ``--max-frames`` frames of each davis16-dev sequence, ``Colorizer("warp")`` runs once
(reference = the first frame, input = the gray frames) and its chroma is turned into RGB both ways.

Two protocols: ``full`` = frames at their own resolution (854x480 here), the network at 216x384 and
its chroma up-sampled, as ``refcolor colorize`` does; ``working`` = ground truth resized to
216x384 as ``refcolor evaluate`` does (no up-sampling). Reported per protocol: PSNR and
colorfulness (COLOR) of both against the ground truth (means over sequences), the largest
difference on RGB uint8, the share of channel values that differ, and the ms per frame of each
conversion. Writes benchmarks/results/rgb_conversion.{json,md} (``--name``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import ROOT, davis16_dev_sequences, machine, machine_line, set_threads, table, write_results

DATA = ROOT.parent / "shared" / "data" / "davis16-dev"
SIZE = (216, 384)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-frames", type=int, default=24)
    parser.add_argument("--sequences", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="rgb_conversion")
    args = parser.parse_args()
    set_threads(args.threads)
    from refcolor.convert import to_rgb_uint8
    from refcolor.eval.baselines import gray_from_rgb
    from refcolor.eval.metrics import colorfulness, mean_psnr, psnr
    from refcolor.eval.runner import load_sequence
    from refcolor.inference import Colorizer
    from refcolor.video import open_source

    seqs = davis16_dev_sequences(DATA, args.sequences)
    times = {"exact": 0.0, "opencv": 0.0}

    class Both(Colorizer):  # the same network output, converted both ways
        def _finish(self, lum, ab):
            out = {}
            for name in ("exact", "opencv"):
                start = time.perf_counter()
                out[name] = to_rgb_uint8(lum, ab, self.upsample, exact=name == "exact")
                times[name] += time.perf_counter() - start
            return out

    c = Both("warp", device="cpu", size=SIZE)
    info = machine()
    rows = []
    for protocol in ("full", "working"):
        acc = {n: {"psnr": [], "color": []} for n in times}
        maxdiff, differ, values, frames, pixels = 0, 0, 0, 0, None
        times.update(exact=0.0, opencv=0.0)
        for seq in seqs:
            if protocol == "full":
                with open_source(seq.path) as src:
                    gt = [f.rgb for f in src if f.index < args.max_frames]
            else:
                gt = load_sequence(seq, SIZE, args.max_frames)
            gray = gray_from_rgb(np.stack(gt))
            c.set_reference(gt[0])
            outs = [c.step(gray[i:i + c.block_size]) for i in range(0, len(gray), c.block_size)]
            res = {n: np.concatenate([o[n] for o in outs]) for n in times}
            for n, rgb in res.items():
                acc[n]["psnr"].append(mean_psnr([psnr(o, g) for o, g in zip(rgb, gt)]))
                acc[n]["color"].append(float(np.mean([colorfulness(o) for o in rgb])))
            diff = np.abs(res["opencv"].astype(np.int16) - res["exact"].astype(np.int16))
            maxdiff, differ, values = max(maxdiff, int(diff.max())), differ + int((diff > 0).sum()), values + diff.size
            frames, pixels = frames + len(gray), gt[0].shape[:2]
            print(protocol, seq.name, len(gray), f"max {int(diff.max())}",
                  {n: f"{acc[n]['psnr'][-1]:.3f}" for n in times}, flush=True)
        p = {n: float(np.mean(acc[n]["psnr"])) for n in times}
        col = {n: float(np.mean(acc[n]["color"])) for n in times}
        rows.append({"protocol": protocol, "size": f"{pixels[0]}x{pixels[1]}", "frames": frames,
                     "psnr_exact": p["exact"], "psnr_opencv": p["opencv"], "color_exact": col["exact"],
                     "color_opencv": col["opencv"], "max_diff_uint8": maxdiff, "share_differing": differ / values,
                     "ms_exact": 1000 * times["exact"] / frames, "ms_opencv": 1000 * times["opencv"] / frames})
    body = [[r["protocol"], r["size"], r["frames"], f"{r['psnr_exact']:.4f}", f"{r['psnr_opencv']:.4f}",
             f"{r['psnr_opencv'] - r['psnr_exact']:+.4f}", f"{r['color_exact']:.3f}", f"{r['color_opencv']:.3f}",
             f"{100 * (r['color_opencv'] / r['color_exact'] - 1):+.3f} %", r["max_diff_uint8"],
             f"{100 * r['share_differing']:.3f} %", f"{r['ms_exact']:.1f}", f"{r['ms_opencv']:.1f}"] for r in rows]
    md = [machine_line(info), "",
          f"`warp` on davis16-dev ({len(seqs)} sequences, first {args.max_frames} frames each, network at "
          f"{SIZE[0]}x{SIZE[1]}), one network output per frame converted both ways:", "",
          table(["protocol", "output size", "frames", "PSNR kornia", "PSNR OpenCV", "Δ PSNR", "COLOR kornia",
                 "COLOR OpenCV", "Δ COLOR", "max abs Δ, RGB uint8", "channel values differing",
                 "kornia ms/frame", "OpenCV ms/frame"], body)]
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
