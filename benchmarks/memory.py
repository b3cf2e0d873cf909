"""Peak memory of ``refcolor.colorize`` against video length (100, 400, 1600 frames) at 1080p.

    nice -n 15 python benchmarks/memory.py                    # all presets: long (1080p I/O)
    nice -n 15 python benchmarks/memory.py --presets warp     # the default model, 3 repeats: ~30 min
    python benchmarks/memory.py --presets lite --lengths 100 400 --repeats 1

The claim tested: memory does not grow with the video's length. Input: 100 distinct frames of
a real clip (../shared/data/train/clips, else bikes.mp4) scaled to 1920x1080, turned gray and
encoded once as closed-GOP H.264 (crf 16, no B-frames); longer inputs repeat those packets
(remuxed, no re-encoding), so every length is decoded for real. The network runs at a tiny
working size (``--size``, default 32x56) so that the run stays feasible on a CPU: decoding,
full-resolution conversion and encoding, the parts that scale with the input, are real.
Each (preset, length) runs in a fresh subprocess (``colorize`` as shipped: background threads,
video output in segments); its peak resident set size is ``ru_maxrss`` (and the peak CUDA
memory on a GPU). The longest run also records its RSS over time. Each length runs ``--repeats``
times (default 3; the lengths interleaved, 100, 400, 1600, 100, ...), so that the 5 % bar of the
issue is judged against the spread of the measurement itself: the table gives the mean, the
range and the standard deviation of each length's peaks, and 1,600 vs 100 frames both as the
ratio of the means and per repeat.
Writes benchmarks/results/memory.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (RESULTS, build, machine, machine_line, make_gray_video, save_reference, set_mmap_threshold, set_threads, source_clip,
                    table, write_results)

LOOP = 100


def make_inputs(tmp: Path, lengths: list[int], height: int, width: int) -> tuple[dict[int, Path], Path]:
    """1080p gray videos of each length (``LOOP`` encoded frames, repeated by remuxing) + a reference."""
    import av

    base = tmp / "base.mp4"  # one closed GOP of LOOP frames, so that remuxed copies decode alone
    reference = make_gray_video(source_clip(), base, height, width, LOOP, crf=16, options={"bf": "0", "g": str(LOOP)})
    with av.open(str(base)) as inp:
        vin = inp.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in inp.demux(vin) if p.size]
        tb, step = vin.time_base, int(round(1 / (vin.average_rate * vin.time_base)))
        videos = {}
        for length in lengths:
            videos[length] = tmp / f"gray{length}.mp4"
            with av.open(str(videos[length]), "w") as out:
                vout = out.add_stream_from_template(vin)
                for k in range(length):
                    data, pts, dts, key = packets[k % len(packets)]
                    packet = av.Packet(data)
                    shift = (k // len(packets)) * len(packets) * step
                    packet.pts, packet.dts, packet.time_base = pts + shift, dts + shift, tb
                    packet.is_keyframe = key
                    packet.stream = vout
                    out.mux(packet)
    return videos, save_reference(reference, tmp / "reference.png")


def child(args) -> None:
    """One run in this fresh process; prints a JSON line."""
    import torch

    from refcolor.pipeline import colorize

    set_threads(args.threads)
    set_mmap_threshold(args.mmap_threshold)
    model = build(args.preset)
    trace, done = [], threading.Event()

    def sample() -> None:  # RSS over time (pages of /proc/self/statm)
        page = os.sysconf("SC_PAGE_SIZE")
        start = time.perf_counter()
        while not done.wait(0.5):
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * page
            trace.append((round(time.perf_counter() - start, 2), rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    result = colorize(args.video, args.reference, args.out, model=model, size=args.size, device=device,
                      overwrite=True, progress=False, segment_frames=args.segment)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    row = {"frames": result.frames, "seconds": seconds,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
           "trace": trace if args.trace else None}
    print("RESULT " + json.dumps(row), flush=True)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for preset in dict.fromkeys(r["preset"] for r in rows):
        pts = sorted((r["length"], r["peak_rss_mb"]) for r in rows if r["preset"] == preset)
        lengths = sorted({n for n, _ in pts})
        means = [sum(v for n, v in pts if n == m) / sum(1 for n, _ in pts if n == m) for m in lengths]
        line, = a.plot(lengths, means, marker="o", label=f"{preset} (mean; dots: each run)")
        a.scatter(*zip(*pts), s=12, color=line.get_color(), alpha=0.6)
        for r in rows:
            if r["preset"] == preset and r.get("trace"):
                t = r["trace"]
                fps = r["frames"] / r["seconds"]
                b.plot([x * fps for x, _ in t], [y for _, y in t],
                       label=f"{preset}, {r['length']} frames, run {r.get('repeat', 0) + 1}")
    a.set_xscale("log")
    a.set_xticks([r["length"] for r in rows], [str(r["length"]) for r in rows])
    a.set_ylim(bottom=0)
    a.set_xlabel("video length (frames, 1080p)")
    a.set_ylabel("peak RSS (MB)")
    a.set_title("peak resident memory vs length")
    a.legend()
    b.set_ylim(bottom=0)
    b.set_xlabel("frames (approx., from time x mean rate)")
    b.set_ylabel("RSS (MB)")
    b.set_title("RSS during the longest run")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def quarters(trace: list) -> list[float]:
    """Median RSS in each quarter of a run's trace (the last sample, after the writers close, dropped)."""
    import statistics

    values = [mb for _, mb in trace[:-1]]
    q = max(1, len(values) // 4)
    return [statistics.median(values[i * q : (i + 1) * q] or values[-1:]) for i in range(4)]


def summary(rows: list[dict]) -> tuple[list, list]:
    """Per (preset, length): mean, range and standard deviation of the peaks over the repeats; per
    preset: the longest vs the shortest length, as the ratio of the means and repeat by repeat."""
    import statistics

    stats, verdicts = [], []
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = [r for r in rows if r["preset"] == preset]
        lengths = sorted({r["length"] for r in mine})
        peaks = {n: {r.get("repeat", 0): r["peak_rss_mb"] for r in mine if r["length"] == n} for n in lengths}
        for n in lengths:
            v = list(peaks[n].values())
            stats.append([preset, n, len(v), f"{statistics.mean(v):.0f}", f"{min(v):.0f}-{max(v):.0f}",
                          f"{statistics.stdev(v):.0f}" if len(v) > 1 else "-",
                          f"{100 * (max(v) - min(v)) / statistics.mean(v):.1f} %"])
        lo, hi = lengths[0], lengths[-1]
        if lo == hi:
            continue
        both = sorted(set(peaks[lo]) & set(peaks[hi]))
        each = [100 * (peaks[hi][k] / peaks[lo][k] - 1) for k in both]
        mean = 100 * (statistics.mean(peaks[hi].values()) / statistics.mean(peaks[lo].values()) - 1)
        within = all(abs(e) <= 5 for e in each) and abs(mean) <= 5
        verdicts.append([preset, f"{hi} vs {lo}", f"{mean:+.1f} %", ", ".join(f"{e:+.1f} %" for e in each),
                         "**yes**" if within else "**no**"])
    return stats, verdicts


def report(rows: list[dict], info: dict, args) -> None:
    """Rows of other presets from an earlier run are kept (run presets separately if need be)."""
    rows = sorted(rows, key=lambda r: (r["preset"], r.get("repeat", 0), r["length"]))
    lengths = [r["length"] for r in rows]
    first = {(r["preset"], r.get("repeat", 0)): r["peak_rss_mb"] for r in rows if r["length"] == min(lengths)}
    body = [[r["preset"], r.get("repeat", 0) + 1, r["length"], r["frames"], f"{r['peak_rss_mb']:.0f}",
             f"{100 * (r['peak_rss_mb'] / first[r['preset'], r.get('repeat', 0)] - 1):+.1f} %"
             if (r["preset"], r.get("repeat", 0)) in first else "-",
             f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] is not None else "-",
             f"{r['frames'] / r['seconds']:.2f}"] for r in rows]
    # a leak shows as a trend of the RSS over the longest run, not only as a higher peak
    trend = [[r["preset"], r.get("repeat", 0) + 1, r["length"], *(f"{q:.0f}" for q in quarters(r["trace"]))]
             for r in rows if r.get("trace")]
    stats, verdicts = summary(rows)
    md = "\n".join([machine_line(info), "", f"Input {args.input} (HxW), working size {args.size}, segments of {args.segment} frames"
                    f"{', MALLOC_ARENA_MAX=' + os.environ['MALLOC_ARENA_MAX'] if 'MALLOC_ARENA_MAX' in os.environ else ''}"
                    f"{f', glibc mmap threshold fixed at {args.mmap_threshold} MiB' if args.mmap_threshold else ''}.", "",
                    table(["preset", "length", "repeats", "mean peak RSS MB", "range", "std", "range / mean"], stats),
                    "", table(["preset", "lengths", "ratio of the means", "per repeat", "within 5 %"], verdicts), "",
                    "Every run:", "",
                    table(["preset", "repeat", "length", "frames written", "peak RSS MB", f"vs {min(lengths)} frames",
                           "CUDA peak MB", "frames/s"], body),
                    *(["", "Median RSS (MB) in each quarter of the longest runs (sampled every 0.5 s):", "",
                       table(["preset", "repeat", "length", "1st quarter", "2nd", "3rd", "4th"], trend)] if trend else [])])
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows}, md)
    plot(rows, RESULTS / f"{args.name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["warp", "lite", "paper"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[100, 400, 1600])
    parser.add_argument("--size", default="32x56", help="working size of the network (tiny: the network is not "
                        "what grows with the length; paper at 64x112 would add ~0.5 s per frame here)")
    parser.add_argument("--input", default="1080x1920", help="input size HxW")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="memory", help="results file stem under benchmarks/results")
    parser.add_argument("--segment", type=int, default=480, help="frames per output segment (colorize's "
                        "segment_frames; a small value puts many segment boundaries into a short run)")
    parser.add_argument("--mmap-threshold", type=int, default=0, metavar="MIB",
                        help="fix glibc's mmap threshold at MIB MiB in each run (0: glibc's own, as shipped)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each length, each in a fresh subprocess")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    set_threads(args.threads)
    info = machine()
    h, w = (int(v) for v in args.input.split("x"))
    old = RESULTS / f"{args.name}.json"
    kept = [r for r in json.loads(old.read_text())["rows"] if r["preset"] not in args.presets] if old.exists() else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="refcolor-mem-") as tmp:
        tmp = Path(tmp)
        videos, reference = make_inputs(tmp, sorted(args.lengths), h, w)
        for preset in args.presets:
            for repeat, length in ((k, n) for k in range(args.repeats) for n in sorted(args.lengths)):
                cmd = [sys.executable, __file__, "--child", "--preset", preset, "--video", str(videos[length]),
                       "--reference", str(reference), "--out", str(tmp / "out.mp4"), "--size", args.size,
                       "--threads", str(args.threads), "--segment", str(args.segment), "--mmap-threshold", str(args.mmap_threshold)] + (["--trace"] if length == max(args.lengths) else [])
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{preset} {length}: child failed\n{proc.stdout}\n{proc.stderr}")
                row = {"preset": preset, "length": length, "repeat": repeat, **json.loads(line[7:])}
                rows.append(row)
                print(f"{preset} {length} frames (repeat {repeat + 1}): peak RSS {row['peak_rss_mb']:.0f} MB, "
                      f"{row['frames'] / row['seconds']:.2f} frames/s", flush=True)
                report(kept + rows, info, args)  # after each run: a partial table survives an interruption
if __name__ == "__main__":
    main()
