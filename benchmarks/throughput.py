"""Network throughput (frames/s) per preset x working size x block size N, on CPU (and CUDA).

    nice -n 15 python benchmarks/throughput.py                       # 1 torch thread, ~6 min here
    python benchmarks/throughput.py --threads 2 --presets warp lite  # all cores
    python benchmarks/throughput.py --device cuda                    # + peak CUDA memory
    python benchmarks/throughput.py --device cuda --amp --name throughput-cuda-bf16  # bf16 autocast

The network alone (``step`` on normalised L blocks, linkage memory carried between blocks),
with random-init weights for the presets (speed does not depend on the values; the
packaged ``lite`` runs at the same speed) and the ImageNet backbone for ``warp``. The reference is encoded
once, outside the timing. Each cell: one untimed warm-up block, then blocks until
``--min-seconds``. A cell whose warm-up frame takes longer than ``--slow`` seconds is measured
on one block of N = 1 and N = 3 only, above 4x that on one frame (stated in the output). Wall time and process CPU time are
both recorded: on a shared machine the CPU time is the steadier figure. ``lite/warp`` is the
ratio to ``warp`` at the same size and N, measured in the same run.
Writes benchmarks/results/throughput.{json,md,png}.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from common import RESULTS, build, machine, machine_line, set_threads, table, write_results


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Cell:
    """One preset at one working size: the reference encoded, the memory carried across blocks."""

    def __init__(self, model, device: torch.device, size: tuple[int, int], amp: bool = False) -> None:
        self.model, self.device, self.size = model, device, size
        # bf16 autocast on CUDA, as ``refcolor colorize --amp`` runs the network
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
        self.gen = torch.Generator().manual_seed(0)
        h, w = size
        with torch.inference_mode():
            self.state = model.encode_reference((torch.rand(1, 3, h, w, generator=self.gen) * 2 - 1).to(device))
        self.memory = model.init_memory()

    def block(self, n: int) -> float:
        """Runs one block of n frames; returns its wall seconds (the first one warms up)."""
        l = (torch.rand(1, n, 1, *self.size, generator=self.gen) * 2 - 1).to(self.device)
        with torch.inference_mode(), self.autocast():
            t = time.perf_counter()
            _, self.memory = self.model.step(l, self.state, self.memory)
            sync(self.device)
        return time.perf_counter() - t

    def measure(self, n: int, min_seconds: float, warm: bool, max_blocks: int | None) -> dict:
        if warm:
            self.block(n)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        frames, wall, cpu, count = 0, 0.0, 0.0, 0
        while (wall < min_seconds or count == 0) and (max_blocks is None or count < max_blocks):
            c = time.process_time()
            wall += self.block(n)
            cpu += time.process_time() - c
            frames += n
            count += 1
        row = {"frames": frames, "blocks": count, "wall_s": wall, "cpu_s": cpu,
               "fps_wall": frames / wall, "fps_cpu": frames / cpu if cpu > 0 else None}
        if self.device.type == "cuda":
            row["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return row


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows}, key=lambda s: int(s.split("x")[0]))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for preset in dict.fromkeys(r["preset"] for r in rows):
            pts = sorted((r["n"], r["fps_wall"]) for r in rows if r["size"] == size and r["preset"] == preset)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=preset)
        ax.set_yscale("log")
        ax.set_xlabel("block size N")
        ax.set_ylabel("frames/s (wall)")
        ax.set_title(f"network only, working size {size}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["warp", "lite", "paper"])
    parser.add_argument("--sizes", nargs="+", default=["216x384", "432x768"])
    parser.add_argument("--blocks", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--name", default="throughput", help="basename of the result files in benchmarks/results/")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per cell at least")
    parser.add_argument("--no-flush", action="store_true",
                        help="keep denormal floats (Colorizer flushes them on CPU, on every thread: cpu_math)")
    parser.add_argument("--slow", type=float, default=8.0,
                        help="warm-up seconds per frame above which a cell is cut to one block of N = 1 and 3 "
                             "(above 4x this: one frame)")
    args = parser.parse_args()
    set_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and not args.no_flush:
        from refcolor.cpu_math import set_flush_denormal_everywhere

        set_flush_denormal_everywhere(True)  # as refcolor colorizes: a model's speed then does not hang on its tau
    if args.amp and device.type != "cuda":
        parser.error("--amp needs --device cuda")
    info = machine()
    rows, notes = [], []
    for preset in args.presets:
        model = build(preset).to(device)
        for size_text in args.sizes:
            size = tuple(int(v) for v in size_text.split("x"))
            cell = Cell(model, device, size, amp=args.amp)
            first = cell.block(1)  # warm-up
            blocks, max_blocks = args.blocks, None
            if first > 4 * args.slow:
                blocks, max_blocks = [1], 1
                notes.append(f"{preset} at {size_text}: the warm-up frame took {first:.0f} s, so one frame of N = 1 "
                             "was timed")
            elif first > args.slow:
                blocks, max_blocks = [n for n in args.blocks if n in (1, 3)], 1
                notes.append(f"{preset} at {size_text}: one frame took {first:.0f} s, so only one block "
                             f"of N = {', '.join(map(str, blocks))} was timed")
            for n in blocks:
                # after the warm-up, a heavy cell (> 1 s per frame) is timed without another one
                row = {"preset": preset, "size": size_text, "n": n,
                       **cell.measure(n, args.min_seconds, warm=first < 1.0, max_blocks=max_blocks)}
                rows.append(row)
                print(f"{preset:6s} {size_text:8s} N={n}  {row['fps_wall']:.3f} frames/s wall, "
                      f"{row['fps_cpu'] or 0:.3f} per CPU second", flush=True)
        del model
    base = {(r["size"], r["n"]): r["fps_wall"] for r in rows if r["preset"] == "warp"}
    for r in rows:
        b = base.get((r["size"], r["n"]))
        r["vs_warp"] = r["fps_wall"] / b if b else None
    cuda = device.type == "cuda"
    header = ["preset", "working size", "N", "frames/s (wall)", "frames/s per CPU second", "s/frame (wall)", "vs warp"]
    header += ["CUDA peak MB"] if cuda else []
    body = [[r["preset"], r["size"], r["n"], f"{r['fps_wall']:.2f}", f"{r['fps_cpu']:.2f}" if r["fps_cpu"] else "-",
             f"{1 / r['fps_wall']:.2f}", f"{r['vs_warp']:.2f}" if r["vs_warp"] else "-"]
            + ([f"{r['cuda_peak_mb']:.0f}"] if cuda else []) for r in rows]
    md = "\n".join([machine_line(info), "", table(header, body), *([""] + [f"- {n}" for n in notes] if notes else [])])
    write_results(args.name, {"machine": info, "args": vars(args), "rows": rows, "notes": notes}, md)
    plot(rows, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
