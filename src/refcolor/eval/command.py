"""``refcolor evaluate``: the paper's evaluation protocol over a dataset, written as a report folder.

Registered in ``refcolor.cli.COMMANDS`` as ``"evaluate": (command.add_parser, command.run)``.
"""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RefcolorError

if TYPE_CHECKING:
    from .runner import EvalConfig

__all__ = ["add_parser", "run", "config_from_args", "parse_blocks", "command_line"]


def parse_blocks(text: str | None) -> list[int]:
    """'1,2,3' -> [1, 2, 3]; empty -> [] (no speed table)."""
    if not text:
        return []
    try:
        blocks = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RefcolorError(f"malformed --blocks {text!r}; expected comma-separated integers, e.g. 1,2,3") from None
    if any(n < 1 or n > 64 for n in blocks):
        raise RefcolorError(f"--blocks {text!r}: every N must be between 1 and 64")
    return sorted(set(blocks), key=blocks.index)


def add_parser(subparsers) -> None:
    """Add the ``evaluate`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "evaluate", help="score colorization methods on a dataset with ground truth (paper section 5)",
        description="Evaluate methods on color videos made gray: frames resized to 216x384, input = CIELAB L, "
                    "reference = first ground-truth frame; FID, LPIPS (when their weights exist), PSNR, SSIM, COLOR, "
                    "WE x1000 and CDC averaged over frames then sequences; a report folder with tables, charts and grids.")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="DAVIS root (JPEGImages/480p/<seq>), a folder of frame folders, or a folder of color videos")
    p.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="report folder (report.json, results.csv, results.md, PNG charts and grids; flow cache inside)")
    p.add_argument("--model", action="append", default=[], metavar="SPEC",
                   help="model to evaluate: 'warp', a preset name or a .safetensors checkpoint; repeat for several; "
                        "SPEC@exact-rgb: the same model with the pre-OpenCV Lab->RGB conversion (kornia, bit-identical)")
    p.add_argument("--baselines", action="store_true",
                   help="also evaluate gray, global transfer (Reinhard 2001), welsh (Welsh 2002) and warp")
    p.add_argument("--ablations", nargs="+", default=[], metavar="CKPT",
                   help="checkpoints evaluated side by side, labelled by their use_transformer/use_linkage/double_head flags")
    p.add_argument("--components", action="append", default=[], metavar="MODEL",
                   help="a trained model (preset or checkpoint) evaluated whole and with each part switched off in turn: "
                        "colorization subnet (output = W1), linkage memory, head 2, transformer blocks (paper Table 2, "
                        "no retraining); repeat for several")
    p.add_argument("--blocks", default="", metavar="N,N,...",
                   help="block sizes N for the speed table (seconds per frame of each model), e.g. 1,2,3; default: none")
    p.add_argument("--size", default="216x384", metavar="HxW", help="working size (default 216x384, multiples of 8)")
    p.add_argument("--reference", default="first", metavar="first|middle|PATH",
                   help="reference: first (default) or middle ground-truth frame, an image, or a folder of <seq>.<ext> images")
    p.add_argument("--max-frames", type=int, default=None, metavar="K", help="evaluate only the first K frames of each sequence")
    p.add_argument("--sequences", default=None, metavar="a,b", help="evaluate only these sequences (comma-separated names)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--flow", default="auto", choices=["auto", "dis", "raft", "raft_large", "raft_small"],
                   help="flow for WE: auto = RAFT when its weights are in the torch hub cache, else DIS (default)")
    p.add_argument("--speed-frames", type=int, default=12, metavar="K",
                   help="frames of the first sequence timed for the speed table (default 12)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch CPU threads (default: torch's own, one per core); 1 is often faster when other jobs load the cores")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> "EvalConfig":
    """An ``EvalConfig`` from parsed arguments (validated: one-line ``RefcolorError`` on bad values)."""
    from ..inference import parse_size
    from .runner import EvalConfig

    if args.max_frames is not None and args.max_frames < 1:
        raise RefcolorError("--max-frames must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise RefcolorError("--threads must be at least 1")
    if args.speed_frames < 1:
        raise RefcolorError("--speed-frames must be at least 1")
    for ckpt in args.ablations:
        if not Path(ckpt).is_file():
            raise RefcolorError(f"--ablations: checkpoint not found: {ckpt}")
    if "warp" in args.components:
        raise RefcolorError("--components needs a trained network (a preset with weights or a checkpoint), not warp")
    sequences = [s.strip() for s in args.sequences.split(",") if s.strip()] if args.sequences else None
    return EvalConfig(data=str(args.data), out=str(args.out), models=list(args.model), baselines=args.baselines,
                      ablations=list(args.ablations), components=list(args.components), blocks=parse_blocks(args.blocks), size=parse_size(args.size),
                      reference=args.reference, max_frames=args.max_frames, sequences=sequences, device=args.device,
                      flow=args.flow, speed_frames=args.speed_frames, threads=args.threads, progress=not args.quiet)


def command_line(args: argparse.Namespace) -> str:
    """The command, rebuilt from the parsed options (so it is right however ``main`` was called)."""
    parts = ["refcolor", "evaluate", "--data", str(args.data), "--out", str(args.out)]
    for spec in args.model:
        parts += ["--model", spec]
    parts += ["--baselines"] if args.baselines else []
    parts += ["--ablations", *args.ablations] if args.ablations else []
    for spec in args.components:
        parts += ["--components", spec]
    for opt, value, default in (("--blocks", args.blocks, ""), ("--size", args.size, "216x384"),
                                ("--reference", args.reference, "first"), ("--max-frames", args.max_frames, None),
                                ("--sequences", args.sequences, None), ("--device", args.device, "auto"),
                                ("--flow", args.flow, "auto"), ("--speed-frames", args.speed_frames, 12),
                                ("--threads", args.threads, None)):
        if value != default:
            parts += [opt, str(value)]
    return " ".join(shlex.quote(p) for p in parts) + (" --quiet" if args.quiet else "")


def run(args: argparse.Namespace) -> None:
    """Run the evaluation, write the report, print the mean table and where the report is."""
    from .report import fmt, write_report
    from .runner import evaluate

    cfg = config_from_args(args)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise RefcolorError(f"--out {out} exists and is not a folder")
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    from ..cpu_math import flush_denormals

    flush_denormals()  # CPU only; CUDA math is unaffected (cpu_math.py)
    start = time.perf_counter()
    summary, grids = evaluate(cfg)
    summary["command"] = command_line(args)
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_report(summary, grids, out)
    mean = summary["mean"]
    print(f"{'method':<28} {'PSNR':>7} {'SSIM':>7} {'COLOR':>7} {'WE':>7} {'CDC':>7}")
    for name in summary["rows"]:
        cells = [fmt(mean[name].get(m), d) for m, d in (("PSNR", 2), ("SSIM", 4), ("COLOR", 2), ("WE", 3), ("CDC", 5))]
        cells = ["n/a" if c.startswith("n/a") else c for c in cells]
        print(f"{name:<28} " + " ".join(f"{c[:7]:>7}" for c in cells))
    print(f"report: {out / 'results.md'} ({summary['wall_seconds']:.0f} s)")
