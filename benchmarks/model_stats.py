"""Parameters and MACs per preset at 216x384 with N = 3, measured with torch.utils.flop_counter.

    python benchmarks/model_stats.py            # prints a Markdown table, writes benchmarks/results/model_stats.json

MACs = FLOPs / 2 as counted by FlopCounterMode (convolutions, matmuls, attention); element-wise
ops are not counted. The reference is encoded once per video, so it is reported separately.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from refcolor.config import PRESETS, get_config
from refcolor.models.network import build_model
from refcolor.models.warp import build_warp_model

H, W, N = 216, 384, 3


def count(model, fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def stats(name: str) -> dict:
    model = build_warp_model() if name == "warp" else build_model(get_config(name, pretrained=False))
    model.eval()
    l = torch.rand(1, N, 1, H, W) * 2 - 1
    ref = torch.rand(1, 3, H, W) * 2 - 1
    with torch.inference_mode():
        state = model.encode_reference(ref)
        ref_macs = count(model, lambda: model.encode_reference(ref))
        memory = model.init_memory()
        _, memory = model.step(l, state, memory)  # second block: the linkage memory is read too
        block_macs = count(model, lambda: model.step(l, state, memory))
    params = sum(p.numel() for p in model.parameters())
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return {"model": name, "params": params, "backbone_params": backbone,
            "gmacs_per_block": block_macs / 1e9, "gmacs_per_frame": block_macs / N / 1e9, "gmacs_reference": ref_macs / 1e9}


def main() -> None:
    rows = [stats(name) for name in [*PRESETS, "warp"]]
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "model_stats.json").write_text(json.dumps(rows, indent=2))
    print(f"| model | parameters | of which backbone | GMACs per frame (216x384, N={N}) | GMACs per reference |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['backbone_params'] / 1e6:.2f} M | {r['gmacs_per_frame']:.2f} | {r['gmacs_reference']:.2f} |")


if __name__ == "__main__":
    main()
