"""``malloc_trim`` after each output segment (``refcolor.heap``) on or off: speed and peak memory, A/B.

    nice -n 15 python benchmarks/heap.py          # warp at 32x56, 1080p, 200 frames in segments of 50

Each round runs ``refcolor.colorize`` twice in fresh subprocesses, once as shipped (trim after
each segment) and once without it, alternating which goes first; short segments (``--segment``)
put several segment boundaries into a short run. Reports per-frame wall and CPU time and peak RSS
(``ru_maxrss``) of each, and the ratio of the medians. Writes benchmarks/results/heap.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, machine_line, make_gray_video, save_reference, source_clip, table, write_results


def child(args) -> None:
    import refcolor.heap
    from refcolor import colorize

    if args.mode == "no-trim":
        refcolor.heap._trim = False  # release_free_memory becomes a no-op
    t, c = time.perf_counter(), time.process_time()
    colorize(args.video, args.reference, args.out, model=args.preset, size=args.size, progress=False, overwrite=True,
             segment_frames=args.segment)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="warp")
    ap.add_argument("--size", default="32x56")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--segment", type=int, default=50, help="frames per output segment")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--input", default="1080x1920")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        return child(args)
    h, w = (int(v) for v in args.input.split("x"))
    info, rows = machine(), []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "gray.mp4"
        rgb = make_gray_video(source_clip(), video, h, w, args.frames)
        ref = save_reference(rgb, tmp / "ref.png")
        for r in range(args.rounds):
            for mode in (("trim", "no-trim") if r % 2 == 0 else ("no-trim", "trim")):
                cmd = [sys.executable, __file__, "--mode", mode, "--video", str(video), "--reference", str(ref),
                       "--out", str(tmp / f"out-{mode}.mp4"), "--preset", args.preset, "--size", args.size, "--segment", str(args.segment)]
                res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
                rows.append({"round": r, "mode": mode, **res})
                print(f"round {r} {mode:8s}: {1000 * res['wall_s'] / args.frames:.0f} ms/frame wall, "
                      f"{1000 * res['cpu_s'] / args.frames:.0f} ms CPU, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    med = {m: {k: statistics.median(x[k] for x in rows if x["mode"] == m) for k in ("wall_s", "cpu_s", "peak_rss_mb")}
           for m in ("trim", "no-trim")}
    body = [[m, f"{1000 * med[m]['wall_s'] / args.frames:.0f}", f"{1000 * med[m]['cpu_s'] / args.frames:.0f}",
             f"{med[m]['peak_rss_mb']:.0f}"] for m in ("no-trim", "trim")]
    body.append(["trim / no-trim", f"{med['trim']['wall_s'] / med['no-trim']['wall_s']:.3f}",
                 f"{med['trim']['cpu_s'] / med['no-trim']['cpu_s']:.3f}",
                 f"{med['trim']['peak_rss_mb'] / med['no-trim']['peak_rss_mb']:.3f}"])
    md = "\n".join([machine_line(info), "",
                    f"`{args.preset}` at {args.size}, {args.frames} frames of {args.input} gray H.264 in segments of {args.segment}, "
                    f"median of {args.rounds} rounds (alternating order):", "",
                    table(["after each segment", "ms/frame (wall)", "ms/frame (CPU)", "peak RSS MB"], body)])
    write_results("heap", {"machine": info, "args": vars(args), "rows": rows, "median": med}, md)
    print(md)


if __name__ == "__main__":
    main()
