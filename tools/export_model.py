"""Export a trained checkpoint as the packaged default model (fp16 safetensors, config inside).

    python tools/export_model.py runs/lite-v2/model-best.safetensors \
        --out src/refcolor/weights/lite.safetensors --note "step 1200 EMA, val 37.4 dB"

``--as-default --report REPORT.json`` marks the weights as what ``default`` means (metadata
``default = "yes"``), and only when that report (``refcolor evaluate --baselines`` on the whole of
davis16-dev, with this model) shows the default model's bars met (``default_bars``); otherwise it
refuses. Without it the packaged weights load with ``--model lite`` and ``default`` stays ``warp``.

The weights are stored in float16 (half the size; ``load_model`` casts back to float32, and
the round trip changes ab by far less than one 8-bit level, checked here before writing).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from refcolor.checkpoint import load_model, read_metadata, save_model
from refcolor.errors import RefcolorError

MAX_MB = 25.0
# The default model's bars on davis16-dev (the Quality issue): warp gives 30.91 dB and WE 1.071.
PSNR_BAR, WE_BAR, COLOR_SHARE = 31.75, 0.96, 0.90


def default_bars(report: dict, method: str | None = None) -> list[str]:
    """The default model's bars (docs/MODEL.md) against a ``refcolor evaluate`` report.json: the
    list of those missed, empty when every bar is met. ``method``: the model's row (default: the
    report's only trained model)."""
    config, mean = report.get("config", {}), report.get("mean", {})
    if Path(str(config.get("data", ""))).name != "davis16-dev" or config.get("sequences") or config.get("max_frames"):
        return ["the report is not a full davis16-dev run"]
    if not config.get("baselines"):
        return ["the report has no baselines (run refcolor evaluate with --baselines)"]
    if method is None:
        models = [m["name"] for m in report.get("methods", []) if m.get("kind") == "model" and m["name"] != "warp"]
        if len(models) != 1:
            return [f"name the model's row with --method (the report has {models or 'none'})"]
        method = models[0]
    if method not in mean:
        return [f"no row {method!r} in the report"]
    m, warp, glob, gt = mean[method], mean["warp"], mean["global transfer"], mean["ground truth"]
    checks = [  # the Quality issue's bars (docs/MODEL.md, "Against the bars")
        (m["PSNR"] >= PSNR_BAR, f"PSNR {m['PSNR']:.2f} < {PSNR_BAR} dB (warp {warp['PSNR']:.2f})"),
        (m["PSNR"] > glob["PSNR"], f"PSNR {m['PSNR']:.2f} <= global transfer {glob['PSNR']:.2f}"),
        (m["WE"] <= WE_BAR, f"WE {m['WE']:.3f} > {WE_BAR} (warp {warp['WE']:.3f})"),
        (m["COLOR"] >= COLOR_SHARE * gt["COLOR"],
         f"COLOR {m['COLOR']:.2f} < {COLOR_SHARE:.0%} of the ground truth's {gt['COLOR']:.2f}"),
    ]
    return [why for ok, why in checks if not ok]


def export(src: Path, out: Path, note: str = "", as_default: bool = False) -> float:
    """Write ``src`` as fp16 to ``out``; returns the max |Δab| (normalised) of the fp16 round trip."""
    model = load_model(src)  # checks the file and its config; the metadata below is its header only
    extra = {k: v for k, v in read_metadata(src).items() if k not in ("format", "config")}
    extra.update({"source": src.name, "note": note, "default": "yes" if as_default else "no"})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out, dtype=torch.float16, metadata=extra)
    size_mb = out.stat().st_size / 2**20
    if size_mb > MAX_MB:
        out.unlink()
        raise RefcolorError(f"exported model is {size_mb:.1f} MB, over the {MAX_MB} MB budget")
    # fp16 round trip on a fixed random clip: the shipped model must colorize like the trained one.
    g = torch.Generator().manual_seed(0)
    l = torch.rand(1, 2, 1, 64, 112, generator=g) * 2 - 1
    ref = torch.cat([torch.rand(1, 1, 64, 112, generator=g) * 2 - 1, torch.rand(1, 2, 64, 112, generator=g) - 0.5], 1)
    half = load_model(out)
    with torch.no_grad():
        a = model.step(l, model.encode_reference(ref), None)[0]
        b = half.step(l, half.encode_reference(ref), None)[0]
    return float((a - b).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=Path("src/refcolor/weights/lite.safetensors"))
    p.add_argument("--note", default="")
    p.add_argument("--as-default", action="store_true", help="mark the weights as the default model (needs --report)")
    p.add_argument("--report", type=Path, help="report.json of `refcolor evaluate --baselines` on davis16-dev with this model")
    p.add_argument("--method", help="the model's row in --report (default: its only trained model)")
    args = p.parse_args(argv)
    try:
        if args.as_default:
            if args.report is None or not args.report.is_file():
                raise RefcolorError("--as-default needs --report: a davis16-dev report.json of this model")
            missed = default_bars(json.loads(args.report.read_text()), args.method)
            if missed:
                raise RefcolorError("not the default: " + "; ".join(missed))
        diff = export(args.checkpoint, args.out, args.note, args.as_default)
    except RefcolorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MB); fp16 round trip max |d ab| = {diff * 110:.3f} ab units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
