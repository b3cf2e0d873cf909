"""ONNX Runtime vs PyTorch on the CPU for ``warp`` and ``lite``: export, agreement, speed.

    pip install onnxruntime onnx onnxscript
    nice -n 15 python benchmarks/onnx_cpu.py            # 1 thread each, a few minutes

One block (N = 3) at 216x384 in steady state (a linkage memory present, as after the first
block; ``lite`` with random-init weights), through ``refcolor.onnx_backend.OnnxStep``, the backend
of ``--backend onnx``: exported with ``torch.onnx.export`` (TorchScript exporter for ``warp``,
dynamo exporter for ``lite``; fixed shapes), run by an ONNX Runtime session with the same number
of intra-op threads as torch and all graph optimisations on. Rounds alternate PyTorch and ORT;
the best CPU time of each is kept.
Agreement: max |delta ab| (CIELAB units) between the two on the same inputs; the issue's bar is
outputs within 1e-3 (of the network's normalised ab in [-1, 1]).
Writes benchmarks/results/onnx_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import build, machine, machine_line, set_threads, table, write_results

SIZE, N = (216, 384), 3


def compare(preset: str, rounds: int, threads: int) -> dict:
    import onnxruntime as ort

    from refcolor.onnx_backend import OnnxStep, default_exporter

    model = build(preset)
    g = torch.Generator().manual_seed(0)
    l = torch.rand(1, N, 1, *SIZE, generator=g) * 2 - 1
    ref = torch.rand(1, 3, *SIZE, generator=g) * 2 - 1
    step = OnnxStep(model, threads=threads)  # the backend of ``--backend onnx``
    with torch.inference_mode():
        state = model.encode_reference(ref)
        _, memory = model.step(l, state, model.init_memory())
        start = time.perf_counter()
        step(l, state, memory)  # exports this signature's graph (this call runs PyTorch)
        export_s = time.perf_counter() - start
        step(l, state, memory)  # first ORT run: its own allocations
        best = {"torch": float("inf"), "ort": float("inf")}
        outs = {}
        for _ in range(rounds):
            for name, fn in (("torch", model.step), ("ort", step)):
                c = time.process_time()
                outs[name] = fn(l, state, memory)[0]
                best[name] = min(best[name], time.process_time() - c)
    diff = (outs["torch"] - outs["ort"]).abs().max().item()
    return {"preset": preset, "exporter": default_exporter(model), "export_s": export_s,
            "ms_torch": 1000 * best["torch"] / N, "ms_ort": 1000 * best["ort"] / N,
            "ort_speedup": best["torch"] / best["ort"], "max_diff_normalised": diff, "max_dab": diff * 110,
            "ort_version": ort.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["warp", "lite"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    info = machine()
    rows = []
    for preset in args.presets:
        rows.append(compare(preset, args.rounds, args.threads))
        print(rows[-1], flush=True)
    body = [[r["preset"], r["exporter"], f"{r['ms_torch']:.0f}", f"{r['ms_ort']:.0f}", f"{r['ort_speedup']:.2f}x",
             f"{r['max_diff_normalised']:.1e}", f"{r['max_dab']:.1e}", f"{r['export_s']:.0f}"] for r in rows]
    md = "\n".join([machine_line(info), "", f"One block N = {N} at {SIZE[0]}x{SIZE[1]}, CPU ms per frame, "
                    f"onnxruntime {rows[0]['ort_version'] if rows else '?'}:", "",
                    table(["preset", "exporter", "PyTorch", "ONNX Runtime", "ORT speed-up", r"max \|diff\| (normalised ab)",
                           r"max \|Δab\|", "export s"], body)])
    write_results("onnx_cpu", {"machine": info, "args": vars(args), "rows": rows}, md)


if __name__ == "__main__":
    main()
