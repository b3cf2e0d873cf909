"""Each speed option measured against its baseline in the same run, with the output difference.

    nice -n 15 python benchmarks/speedups.py                    # all sections, a few minutes
    python benchmarks/speedups.py --sections chunk channels_last

Sections (interleaved rounds, the best of ``--rounds`` CPU times kept):
* ``profile``: where ``lite`` and ``warp`` spend a block at 216x384 (torch.profiler, self CPU).
* ``chunk``: ``nonlocal_warp`` alone at the real head shapes, for several row-chunk sizes
  (the ``chunk`` argument; the network calls it with the default, 4096).
* ``channels_last``: the network's weights stored channels-last vs not.
* ``convert``: full-resolution L and Lab -> RGB at 1080p, kornia on whole blocks (before) vs
  ``refcolor.convert`` (after).
* ``compile``: ``torch.compile`` of the step of ``warp`` and ``lite`` (compile time, speed).
* ``gemm``: the multiply-adds per second this CPU reaches at all (a 2048^3 fp32 matrix product,
  1 and 2 threads): the ceiling that the networks' MAC counts are divided by.
* ``stages``: one block's wall time split by the network's named steps (backbone, correspondence,
  linkage, non-local warp, colorization) for ``--stage-presets`` (default lite, paper).
Writes benchmarks/results/speedups.{json,md}; max |delta ab| is in CIELAB units (ab in [-110, 110]).
"""
from __future__ import annotations

import argparse
import functools
import time

import numpy as np
import torch

from common import build, machine, machine_line, set_threads, table, write_results

SIZE = (216, 384)
N = 3


def best_cpu(fn, rounds: int) -> tuple[float, object]:
    out, best = None, float("inf")
    for _ in range(rounds):
        c = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c)
    return best, out


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, N, 1, *SIZE, generator=g) * 2 - 1, torch.rand(1, 3, *SIZE, generator=g) * 2 - 1


def section_profile(args) -> tuple[list, list]:
    from torch.profiler import profile

    rows = []
    for preset in ("lite", "warp"):
        model = build(preset)
        l, ref = inputs()
        with torch.inference_mode():
            state = model.encode_reference(ref)
            model.step(l, state, None)
            with profile() as prof:
                model.step(l, state, None)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        for e in events[:6]:
            rows.append({"preset": preset, "op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count})
    body = [[r["preset"], r["op"], f"{100 * r['share']:.1f} %", r["calls"]] for r in rows]
    return rows, ["Self CPU time of one block (N = 3, 216x384) by operator, top 6:", "",
                  table(["preset", "operator", "share", "calls"], body)]


def _timed(module_or_fn, key: str, spent: dict):
    """Wrap a callable so its wall time adds to ``spent[key]``."""
    @functools.wraps(module_or_fn)
    def wrapper(*a, **kw):
        start = time.perf_counter()
        out = module_or_fn(*a, **kw)
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
        return out
    return wrapper


def section_gemm(args) -> tuple[list, list]:
    """GMAC/s of a 2048^3 fp32 matmul (the best of ``--rounds`` x 5 products) with 1 and 2 threads."""
    rows = []
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(5):
                torch.mm(a, b)
            best = min(best, (time.perf_counter() - start) / 5)
        rows.append({"threads": threads, "gmac_per_s": 2048**3 / best / 1e9})
    torch.set_num_threads(args.threads)
    body = [[r["threads"], f"{r['gmac_per_s']:.1f}"] for r in rows]
    return rows, ["fp32 matrix product 2048 x 2048 x 2048 (torch.mm), best of the rounds:", "",
                  table(["torch threads", "GMAC/s"], body)]


def section_stages(args) -> tuple[list, list]:
    """Wall time of one steady-state block by named step (the block of the best of ``--rounds``)."""
    from refcolor.models import network

    rows = []
    for preset in args.stage_presets:
        model = build(preset)
        l, ref = inputs()
        spent: dict = {}
        parts = {"backbone": (model.backbone, ("taps", "assemble", "match_features")),
                 "correspondence": (model.correspondence, ("embed_high", "augment", "fuse", "heads")),
                 "linkage": (model.linkage, ("read", "write")), "colorization": (model.colorization, ("forward",))}
        for key, (module, names) in parts.items():
            for name in names if module is not None else ():
                setattr(module, name, _timed(getattr(module, name), key, spent))
        original = network.nonlocal_warp
        network.nonlocal_warp = _timed(original, "non-local warp", spent)
        best, best_total = None, float("inf")
        try:
            with torch.inference_mode():
                state = model.encode_reference(ref)
                _, memory = model.step(l, state, None)  # steady state: the linkage memory is read and written
                for _ in range(args.rounds):
                    spent.clear()
                    start = time.perf_counter()
                    model.step(l, state, memory)
                    total = time.perf_counter() - start
                    if total < best_total:
                        best, best_total = dict(spent), total
        finally:
            network.nonlocal_warp = original
        best["other"] = best_total - sum(best.values())
        for key, value in best.items():
            rows.append({"preset": preset, "stage": key, "s_per_frame": value / N, "share": value / best_total})
    body = [[r["preset"], r["stage"], f"{1000 * r['s_per_frame']:.0f}", f"{100 * r['share']:.1f} %"] for r in rows]
    return rows, [f"Wall time of one block (N = {N}, {SIZE[0]}x{SIZE[1]}) by named step, best of {args.rounds}:", "",
                  table(["preset", "step", "ms per frame", "share"], body)]


def section_chunk(args) -> tuple[list, list]:
    from refcolor.models.correspondence import nonlocal_warp

    g = torch.Generator().manual_seed(0)
    # (name, channels K, query positions P, reference positions Pr)
    heads = [("lite/warp h4 head, 216x384", 240, 54 * 96, 54 * 96), ("lite h8 head, 216x384", 64, 27 * 48, 27 * 48),
             ("warp h4 head, 432x768", 176, 108 * 192, 108 * 192)]
    chunks = [256, 512, 1024, 2048, 4096, 8192]
    rows = []
    for name, k, p, pr in heads:
        q = torch.nn.functional.normalize(torch.randn(1, N, k, p, generator=g), dim=2)
        key = torch.nn.functional.normalize(torch.randn(1, k, pr, generator=g), dim=1)
        v = torch.randn(1, 2, pr, generator=g)
        times = {c: float("inf") for c in chunks}
        outs = {}
        rounds = args.rounds if p <= 6000 else 1
        with torch.inference_mode():
            for _ in range(rounds):
                for c in chunks:
                    t, outs[c] = best_cpu(lambda: nonlocal_warp(q, key, v, 0.01, chunk=c), 1)
                    times[c] = min(times[c], t)
        for c in chunks:
            diff = (outs[c][0] - outs[4096][0]).abs().max().item() * 110
            rows.append({"head": name, "chunk": c, "ms_per_frame": 1000 * times[c] / N,
                         "vs_4096": times[4096] / times[c], "max_dab": diff})
            print(name, c, f"{1000 * times[c] / N:.0f} ms/frame", flush=True)
    body = [[r["head"], r["chunk"], f"{r['ms_per_frame']:.0f}", f"{r['vs_4096']:.2f}x", f"{r['max_dab']:.1e}"] for r in rows]
    return rows, ["`nonlocal_warp` alone, one frame's correlation with a same-size reference (CPU ms per frame):", "",
                  table(["head", "chunk (rows)", "ms/frame", "speed vs 4096", r"max \|Δab\|"], body)]


def section_channels_last(args) -> tuple[list, list]:
    rows = []
    for preset in ("warp", "lite"):
        model = build(preset)
        l, ref = inputs()
        times, outs = {False: float("inf"), True: float("inf")}, {}
        with torch.inference_mode():
            state = model.encode_reference(ref)
            for _ in range(args.rounds):
                for cl in (False, True):
                    model = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                    t, out = best_cpu(lambda: model.step(l, state, None)[0], 1)
                    times[cl], outs[cl] = min(times[cl], t), out
        diff = (outs[True] - outs[False]).abs().max().item() * 110
        rows.append({"preset": preset, "ms_contiguous": 1000 * times[False] / N, "ms_channels_last": 1000 * times[True] / N,
                     "speedup": times[False] / times[True], "max_dab": diff})
    body = [[r["preset"], f"{r['ms_contiguous']:.0f}", f"{r['ms_channels_last']:.0f}", f"{r['speedup']:.2f}x",
             f"{r['max_dab']:.1e}"] for r in rows]
    return rows, ["Network step (N = 3, 216x384), CPU ms per frame:", "",
                  table(["preset", "contiguous", "channels_last", "speed-up", r"max \|Δab\|"], body)]


def section_convert(args) -> tuple[list, list]:
    import torch.nn.functional as F

    from refcolor.color import lab_to_rgb, rgb_to_lab, tensor_to_uint8, uint8_to_tensor
    from refcolor.convert import luminance, to_rgb_uint8

    rng = np.random.default_rng(0)
    h, w = 1080, 1920
    gray = np.repeat(rng.integers(0, 256, (N, h, w, 1), dtype=np.uint8), 3, axis=-1)
    color = rng.integers(0, 256, (N, h, w, 3), dtype=np.uint8)
    ab = torch.from_numpy(rng.normal(0, 30, (N, 2, *SIZE)).astype(np.float32))
    cpu = torch.device("cpu")

    def old_l(batch):
        return rgb_to_lab(uint8_to_tensor(batch))[:, :1]

    def old_rgb(lum):
        return tensor_to_uint8(lab_to_rgb(torch.cat([lum, F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)], 1)))

    lum = old_l(color)
    cases = [("L of a gray frame", lambda: old_l(gray), lambda: luminance(gray, cpu)),
             ("L of a color frame", lambda: old_l(color), lambda: luminance(color, cpu)),
             ("up-sample + Lab -> RGB uint8", lambda: old_rgb(lum), lambda: to_rgb_uint8(lum, ab))]
    rows = []
    for name, before, after in cases:
        tb, ob = best_cpu(before, args.rounds)
        ta, oa = best_cpu(after, args.rounds)
        ob, oa = (torch.as_tensor(ob).float(), torch.as_tensor(oa).float())
        rows.append({"stage": name, "ms_before": 1000 * tb / N, "ms_after": 1000 * ta / N, "speedup": tb / ta,
                     "max_diff": (ob - oa).abs().max().item()})
    body = [[r["stage"], f"{r['ms_before']:.0f}", f"{r['ms_after']:.0f}", f"{r['speedup']:.1f}x", f"{r['max_diff']:g}"]
            for r in rows]
    return rows, ["Full-resolution conversions at 1920x1080, CPU ms per frame (blocks of 3):", "",
                  table(["stage", "before (kornia, whole block)", "after (refcolor.convert)", "speed-up", r"max \|difference\|"], body)]


def section_compile(args) -> tuple[list, list]:
    rows = []
    for preset in args.compile_presets:
        model = build(preset)
        l, ref = inputs()
        with torch.inference_mode():
            state = model.encode_reference(ref)
            memory = model.init_memory()
            _, memory = model.step(l, state, memory)  # steady state: a memory to read
            compiled = torch.compile(model.step)
            start = time.perf_counter()
            compiled(l, state, None)  # first block (no memory yet) and
            compiled(l, state, memory)  # the others: two graphs
            compile_s = time.perf_counter() - start
            best = {"eager": float("inf"), "compiled": float("inf")}
            outs = {}
            for _ in range(args.rounds):
                for name, fn in (("eager", model.step), ("compiled", compiled)):
                    t, outs[name] = best_cpu(lambda: fn(l, state, memory)[0], 1)
                    best[name] = min(best[name], t)
        rows.append({"preset": preset, "compile_s": compile_s, "ms_eager": 1000 * best["eager"] / N,
                     "ms_compiled": 1000 * best["compiled"] / N, "speedup": best["eager"] / best["compiled"],
                     "max_dab": (outs["eager"] - outs["compiled"]).abs().max().item() * 110})
        print(rows[-1], flush=True)
    body = [[r["preset"], f"{r['compile_s']:.0f}", f"{r['ms_eager']:.0f}", f"{r['ms_compiled']:.0f}",
             f"{r['speedup']:.2f}x", f"{r['max_dab']:.1e}"] for r in rows]
    return rows, ["`torch.compile` (inductor, CPU) of the network's step, N = 3 at 216x384, CPU ms per frame "
                  "(steady state, interleaved rounds):", "",
                  table(["preset", "compile s (both graphs)", "eager", "compiled", "speed-up", r"max \|Δab\|"], body)]


SECTIONS = {"profile": section_profile, "chunk": section_chunk, "channels_last": section_channels_last,
            "convert": section_convert, "compile": section_compile, "stages": section_stages,
            "gemm": section_gemm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile-presets", nargs="+", default=["warp", "lite"])
    parser.add_argument("--stage-presets", nargs="+", default=["lite", "paper"])
    args = parser.parse_args()
    set_threads(args.threads)
    info = machine()
    import json

    from common import RESULTS

    path = RESULTS / "speedups.json"
    data = json.loads(path.read_text()) if path.exists() else {"sections": {}}
    for name in args.sections:
        rows, md = SECTIONS[name](args)
        data["sections"][name] = {"machine": info, "rows": rows, "markdown": md}
        print("\n".join(md), flush=True)
    md = []
    for name, sec in data["sections"].items():
        md += [f"### {name}", "", machine_line(sec["machine"]), "", *sec["markdown"], ""]
    write_results("speedups", data, "\n".join(md))


if __name__ == "__main__":
    main()
