"""A strip of frames for the docs: references on top, then input | output pairs at chosen frames.

    python tools/strip.py --input FRAMES_OR_VIDEO --output COLORIZED --refs a.jpg b.jpg \
        --frames 0 60 120 179 --out docs/oldfilm.png
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from refcolor.errors import RefcolorError
from refcolor.video import open_source, read_image


def frames_at(path: str, wanted: list[int]) -> dict[int, np.ndarray]:
    with open_source(path) as source:
        found = {f.index: f.rgb for f in source if f.index in wanted}
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise RefcolorError(f"{path} has no frame {', '.join(map(str, missing))} ({len(found)} of the wanted found)")
    return found


def main(argv: list[str] | None = None) -> int:
    try:
        build(argv)
    except (RefcolorError, OSError) as err:
        print(f"strip: {err}", file=sys.stderr)
        return 1
    return 0


def build(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--refs", nargs="*", default=[])
    p.add_argument("--frames", nargs="+", type=int, required=True)
    p.add_argument("--width", type=int, default=320, help="width of each tile")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    src, dst = frames_at(args.input, args.frames), frames_at(args.output, args.frames)
    w = args.width
    tile = lambda rgb: Image.fromarray(rgb).resize((w, round(rgb.shape[0] * w / rgb.shape[1])), Image.LANCZOS)  # noqa: E731
    rows = [[tile(src[i]), tile(dst[i])] for i in args.frames]
    th = rows[0][0].height
    refs = [tile(read_image(r)) for r in args.refs]
    rh = max((r.height for r in refs), default=0)
    sheet = Image.new("RGB", (2 * w if not refs else max(2 * w, len(refs) * w // 2), rh // 2 + 18 + len(rows) * (th + 16)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    if refs:
        draw.text((4, 2), "references", fill="black")
        for k, r in enumerate(refs):
            sheet.paste(r.resize((w // 2, r.height // 2)), (k * w // 2, 16))
        y = rh // 2 + 18
    for i, (a, b) in zip(args.frames, rows):
        draw.text((4, y + 2), f"frame {i}: input", fill="black")
        draw.text((w + 4, y + 2), "refcolor", fill="black")
        sheet.paste(a, (0, y + 16))
        sheet.paste(b, (w, y + 16))
        y += th + 16
    out = Path(args.out)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # written whole, then renamed: never a half image
    sheet.save(tmp, optimize=True)
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    sys.exit(main())
