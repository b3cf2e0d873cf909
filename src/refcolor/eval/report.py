"""Evaluation report: report.json, results.csv, results.md, charts and comparison grids.

Everything is first written into a hidden staging folder inside ``REPORT_DIR`` and then moved
into place file by file with ``os.replace`` (atomic per file), ``report.json`` last: a report
folder never holds a half-written file, and ``report.json`` appears only once the rest is in place.

Values in the summary (``runner.evaluate``) are numbers, ``None`` (not applicable, shown "–")
or strings ``"n/a (<reason>)"`` (could not be computed; shown ``n/a [k]`` with the reason in
footnote ``k``, never a stand-in number).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["render_grid", "write_report", "markdown", "fmt", "TABLE_METRICS", "device_name", "versions"]

TABLE_METRICS = (("FID", "↓", 2), ("LPIPS", "↓", 4), ("PSNR", "↑", 2), ("SSIM", "↑", 4), ("COLOR", "↑", 2), ("WE", "↓", 3),
                 ("CDC", "↓", 5))
DIGITS = {name: d for name, _, d in TABLE_METRICS}


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape the numbers."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("refcolor", "torch", "numpy", "opencv-python-headless", "kornia", "scikit-image", "lpips", "pytorch-fid"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def device_name(device) -> str:
    """The accelerator's name, or the CPU model from /proc/cpuinfo and torch's thread count."""
    import torch

    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)"


def render_grid(columns: Sequence[tuple[str, Sequence[np.ndarray]]], row_labels: Sequence[str], title: str = "") -> bytes:
    """PNG bytes of a labelled grid: one column per (label, tiles), one row per frame."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = columns[0][1][0].shape[:2]
    font = ImageFont.load_default(size=max(10, min(16, w // 22)))
    head, side = 24 + (22 if title else 0), 22
    canvas = Image.new("RGB", (side + w * len(columns), head + h * len(row_labels)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((side + 4, 3), title, fill="black", font=font)
    for c, (label, tiles) in enumerate(columns):
        draw.text((side + c * w + 4, head - 20), label, fill="black", font=font)
        for r, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (side + c * w, head + r * h))
    for r, label in enumerate(row_labels):
        strip = Image.new("RGB", (h, side), "white")
        ImageDraw.Draw(strip).text((4, 3), label, fill="black", font=font)
        canvas.paste(strip.rotate(90, expand=True), (0, head + r * h))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


class Footnotes:
    """Collects n/a reasons; ``mark(value)`` -> ``n/a [k]``."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        reason = reason[5:-1] if reason.startswith("n/a (") and reason.endswith(")") else reason
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"n/a [{self.reasons.index(reason) + 1}]"

    def lines(self) -> list[str]:
        return [f"[{i}] {r}" + "  " for i, r in enumerate(self.reasons, 1)]


def fmt(value: object, digits: int = 2, notes: Footnotes | None = None) -> str:
    """A table cell: number with ``digits``, ``–`` for ``None``, ``n/a [k]`` for a reason."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return notes.mark(value) if notes is not None else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{float(value):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(summary: dict) -> str:
    """results.md: the Table-1-style mean table, component tables, per-sequence tables, speed table, warnings."""
    from .components import markdown as components_markdown

    notes = Footnotes()  # filled in the order the sections are written
    evaluated = {k: v for k, v in summary["sequences"].items() if "skipped" not in v}
    out = _md_header(summary, evaluated) + _md_means(summary, evaluated, notes) + components_markdown(summary)
    out += _md_per_sequence(summary, evaluated, notes) + _md_speed(summary) + _md_run_time(summary, notes)
    out += _md_ablations_and_warnings(summary)
    if notes.reasons:
        out += ["## Not available", ""] + notes.lines() + [""]
    out += ["## Files", "", "`report.json` (everything, per sequence and per frame), `results.csv`, `bars.png`, "
            "`psnr_over_time.png` and `psnr_time/<seq>.png`, `grids/<seq>.png` (gray | reference | methods | "
            "ground truth at the first, middle and last frame).", ""]
    return "\n".join(out)


def _md_header(summary: dict, evaluated: dict) -> list[str]:
    cfg, seqs = summary["config"], summary["sequences"]
    frames = sum(v["frames"] for v in evaluated.values())
    out = ["# refcolor evaluation", ""]
    if summary.get("command"):
        out += ["```", summary["command"], "```", ""]
    return out + [
        f"- data: `{cfg['data']}`: {len(evaluated)} sequences evaluated, {len(seqs) - len(evaluated)} skipped, {frames} frames",
        f"- working size {cfg['size'][0]}x{cfg['size'][1]} (area resampling); input = CIELAB L; reference = {cfg['reference']}",
        f"- flow for WE: {summary['flow']}; device: {summary['device']}",
        "- means over frames, then over sequences; WE x1000; CDC = JS divergence of RGB histograms of frames t "
        "and t+k, k = 1, 2, 4 (Liu et al.); FID over all frames of the dataset", ""]


def _md_means(summary: dict, evaluated: dict, notes: Footnotes) -> list[str]:
    mean = summary["mean"]
    out = ["## Mean over sequences", ""]
    header = ["method"] + [f"{m} {arrow}" for m, arrow, _ in TABLE_METRICS]
    rows = [[name] + [fmt(mean[name].get(m), d, notes) for m, _, d in TABLE_METRICS] for name in summary["rows"]]
    out += _table(header, rows) + [""]
    partial = [f"{n} ({mean[n]['sequences']} of {len(evaluated)} sequences)" for n in summary["rows"]
               if n != "ground truth" and mean[n].get("sequences", len(evaluated)) < len(evaluated)]
    if partial:
        out += ["Means over fewer sequences: " + ", ".join(partial) + ".", ""]
    return out


def _md_per_sequence(summary: dict, evaluated: dict, notes: Footnotes) -> list[str]:
    out = []
    for metric in ("PSNR", "COLOR", "WE", "CDC"):
        out += [f"## {metric} per sequence", ""]
        header = ["sequence", "frames"] + summary["rows"]
        rows = [[k, str(v["frames"])] + [fmt(v["methods"].get(n, {}).get("metrics", {}).get(metric), DIGITS[metric], notes)
                                         for n in summary["rows"]] for k, v in evaluated.items()]
        out += _table(header, rows) + [""]
    return out


def _md_speed(summary: dict) -> list[str]:
    cfg, speed = summary["config"], summary.get("speed", {}).get("rows") or []
    if not speed:
        return []
    first = speed[0]
    out = ["## Speed (paper Table 3)", "",
           f"Seconds per frame (DUR) at {cfg['size'][0]}x{cfg['size'][1]} on {summary['device']}, "
           f"first {first['frames']} frames of `{summary['speed']['sequence']}`, after a warm-up block; "
           "PSNR and COLOR on that clip.", ""]
    return out + _table(["method", "N", "DUR (s/frame) ↓", "PSNR ↑", "COLOR ↑"],
                        [[r["method"], str(r["N"]), fmt(r["DUR"], 4), fmt(r["PSNR"], 2), fmt(r["COLOR"], 2)] for r in speed]) + [""]


def _md_run_time(summary: dict, notes: Footnotes) -> list[str]:
    mean = summary["mean"]
    out = ["## Run time of the main evaluation", ""]
    out += _table(["method", "s/frame (colorization only)"],
                  [[n, fmt(mean[n].get("seconds_per_frame"), 4, notes)] for n in summary["rows"] if n != "ground truth"]) + [""]
    timing = summary.get("timing_seconds") or {}
    if timing:
        total = summary.get("wall_seconds")
        out += [f"Where the time went (seconds{f', of {total:.0f} s in all' if total else ''}): "
                + ", ".join(f"{k} {v:.0f}" for k, v in sorted(timing.items(), key=lambda kv: -kv[1])) + ".", ""]
    return out


def _md_ablations_and_warnings(summary: dict) -> list[str]:
    out = []
    flagged = [m for m in summary["methods"] if "flags" in m]
    if flagged:
        out += ["## Ablation checkpoints", ""]
        out += _table(["label", "checkpoint", "use_transformer", "use_linkage", "double_head"],
                      [[m["name"], f"`{m['spec']}`"] + [str(m["flags"][k]) for k in ("use_transformer", "use_linkage", "double_head")]
                       for m in flagged]) + [""]
    skipped = {k: v["skipped"] for k, v in summary["sequences"].items() if "skipped" in v}
    if summary.get("warnings") or skipped:
        out += ["## Warnings", ""] + [f"- {w}" for w in summary.get("warnings", [])] + [""]
    return out


def _csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = [m for m, _, _ in TABLE_METRICS]
    w.writerow(["sequence", "method", "frames"] + names + ["seconds_per_frame"])
    for seq, entry in summary["sequences"].items():
        if "skipped" in entry:
            w.writerow([seq, "", 0] + [""] * len(names) + [""])
            continue
        for name, res in entry["methods"].items():
            m = res["metrics"]
            w.writerow([seq, name, entry["frames"]] + ["" if m.get(k) is None else m.get(k) for k in names]
                       + ["" if res.get("seconds_per_frame") is None else res.get("seconds_per_frame")])
    for name in summary["rows"]:
        m = summary["mean"][name]
        w.writerow(["mean", name, ""] + ["" if m.get(k) is None else m.get(k) for k in names]
                   + ["" if m.get("seconds_per_frame") is None else m.get("seconds_per_frame")])
    return buf.getvalue()


def _bars(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in summary["rows"] if n != "ground truth"]
    gt = summary["mean"].get("ground truth", {})
    fig, axes = plt.subplots(1, 5, figsize=(5 + 2.7 * len(names), 3.6))
    for ax, (metric, arrow) in zip(axes, (("PSNR", "↑"), ("SSIM", "↑"), ("COLOR", "↑"), ("WE", "↓"), ("CDC", "↓"))):
        vals = [summary["mean"][n].get(metric) for n in names]
        nums = [v if isinstance(v, (int, float)) else 0.0 for v in vals]
        ax.bar(range(len(names)), nums, color=[f"C{i}" for i in range(len(names))])
        for i, v in enumerate(vals):
            ax.text(i, nums[i], "n/a" if not isinstance(v, (int, float)) else f"{v:.{min(DIGITS[metric], 5 if metric == 'CDC' else 3)}f}",
                    ha="center", va="bottom", fontsize=7)
        if isinstance(gt.get(metric), (int, float)):
            ax.axhline(gt[metric], color="k", ls="--", lw=1, label="ground truth")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{metric} {arrow}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _curves(summary: dict, names: Sequence[str], seqs: Sequence[str], path: Path, cols: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(cols, len(seqs))
    rows = math.ceil(len(seqs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.6), squeeze=False)
    for ax, seq in zip(axes.flat, seqs):
        for i, n in enumerate(names):
            curve = summary["sequences"][seq]["methods"].get(n, {}).get("psnr") or []
            if curve:
                ax.plot(range(len(curve)), curve, color=f"C{i}", lw=1, label=n)
        ax.set_title(seq, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.set_ylabel("PSNR (dB)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(seqs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(names), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.4 * rows + 0.6)))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(summary: dict, grids: dict[str, bytes], out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into ``out_dir`` (staging folder, then ``os.replace`` per file)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        (stage / "results.md").write_text(markdown(summary), encoding="utf-8")
        (stage / "results.csv").write_text(_csv(summary), encoding="utf-8")
        evaluated = [k for k, v in summary["sequences"].items() if "skipped" not in v]
        names = [n for n in summary["rows"] if n != "ground truth"]
        _bars(summary, stage / "bars.png")
        _curves(summary, names, evaluated, stage / "psnr_over_time.png")
        (stage / "psnr_time").mkdir()
        for seq in evaluated:
            _curves(summary, names, [seq], stage / "psnr_time" / f"{seq}.png")
        (stage / "grids").mkdir()
        for name, data in grids.items():
            (stage / "grids" / name).write_bytes(data)
        text = json.dumps(summary, indent=1, allow_nan=False, ensure_ascii=False)
        (stage / "report.json").write_text(text, encoding="utf-8")
        files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == "report.json")  # report.json last
        written: dict[str, Path] = {}
        for rel in files:
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, dest)
            written[str(rel)] = dest
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)
