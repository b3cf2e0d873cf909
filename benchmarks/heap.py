"""Heap settings (``refcolor.heap``'s trim, glibc's mmap threshold): speed and peak memory of the same run, A/B.

    nice -n 15 python benchmarks/heap.py                      # warp at 32x56, 1080p, 200 frames in segments of 50
    python benchmarks/heap.py --modes mmap-4 shipped --size 216x384 --threads 2 --segment 480 --frames 100 \
        --rounds 4 --name heap-threshold-216x384                # the default size, both cores

Modes: ``shipped`` (as ``colorize`` runs: ``malloc_trim`` after each output segment, glibc's own
moving mmap threshold), ``no-trim`` (no trim), ``mmap-N`` (as shipped with glibc's mmap threshold
fixed at N MiB, ``common.set_mmap_threshold``: frame-sized buffers as their own mappings). Each
round runs every mode once in a fresh subprocess, the order rotating from round to round; short
segments (``--segment``) put several segment boundaries into a short run. Reports per-frame wall
and CPU time and peak RSS (``ru_maxrss``): the median and the range over the rounds (the range of
the peaks is what decides whether a 5 % memory bar can be judged from single runs), and each
mode's medians as a ratio to the first mode's. Writes benchmarks/results/{--name}.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import set_mmap_threshold, set_threads, machine, machine_line, make_gray_video, save_reference, source_clip, table, write_results


def child(args) -> None:
    import refcolor.heap
    from refcolor import colorize

    if args.mode == "no-trim":
        refcolor.heap._trim = False  # release_free_memory becomes a no-op
    if args.mode.startswith("mmap-"):  # glibc's threshold fixed at N MiB
        set_mmap_threshold(int(args.mode[5:]))
    set_threads(args.threads)
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
    ap.add_argument("--modes", nargs="+", default=["shipped", "no-trim"],
                    help="shipped, no-trim, or mmap-N (as shipped, glibc's mmap threshold fixed at N MiB)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each run")
    ap.add_argument("--name", default="heap", help="basename of the result files in benchmarks/results/")
    ap.add_argument("--input", default="1080x1920")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for mode in args.modes:
        if mode not in ("shipped", "no-trim") and not (mode.startswith("mmap-") and mode[5:].isdigit()):
            raise SystemExit(f"heap.py: unknown mode {mode!r}")
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
            k = r % len(args.modes)
            for mode in args.modes[k:] + args.modes[:k]:
                cmd = [sys.executable, __file__, "--mode", mode, "--video", str(video), "--reference", str(ref),
                       "--out", str(tmp / f"out-{mode}.mp4"), "--preset", args.preset, "--size", args.size,
                       "--segment", str(args.segment), "--threads", str(args.threads)]
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.splitlines()[-1])
                rows.append({"round": r, "mode": mode, **res})
                print(f"round {r} {mode:8s}: {1000 * res['wall_s'] / args.frames:.0f} ms/frame wall, "
                      f"{1000 * res['cpu_s'] / args.frames:.0f} ms CPU, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    keys = ("wall_s", "cpu_s", "peak_rss_mb")
    runs = {m: {k: [x[k] for x in rows if x["mode"] == m] for k in keys} for m in args.modes}
    med = {m: {k: statistics.median(v) for k, v in runs[m].items()} for m in args.modes}
    ms = lambda v: 1000 * v / args.frames  # noqa: E731
    body = [[m, f"{ms(med[m]['wall_s']):.0f} ({ms(min(runs[m]['wall_s'])):.0f}-{ms(max(runs[m]['wall_s'])):.0f})",
             f"{ms(med[m]['cpu_s']):.0f}", f"{med[m]['peak_rss_mb']:.0f}",
             f"{min(runs[m]['peak_rss_mb']):.0f}-{max(runs[m]['peak_rss_mb']):.0f} "
             f"({100 * (max(runs[m]['peak_rss_mb']) - min(runs[m]['peak_rss_mb'])) / med[m]['peak_rss_mb']:.1f} %)"]
            for m in args.modes]
    base = args.modes[0]
    body += [[f"{m} / {base}", f"{med[m]['wall_s'] / med[base]['wall_s']:.3f}", f"{med[m]['cpu_s'] / med[base]['cpu_s']:.3f}",
              f"{med[m]['peak_rss_mb'] / med[base]['peak_rss_mb']:.3f}", ""] for m in args.modes[1:]]
    md = "\n".join([machine_line(info), "",
                    f"`{args.preset}` at {args.size}, {args.threads} torch thread(s), {args.frames} frames of {args.input} gray "
                    f"H.264 in segments of {args.segment}, median of {args.rounds} rounds (rotating order):", "",
                    table(["mode", "ms/frame wall (range)", "ms/frame CPU", "peak RSS MB", "peak range (/ median)"], body)])
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows, "median": med}, md)
    print(md)


if __name__ == "__main__":
    main()
