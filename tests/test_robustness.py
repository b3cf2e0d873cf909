"""Odd and bad inputs not covered elsewhere (the catalogue is docs/ROBUSTNESS.md), and
property-based tests of the Colorizer over frame sizes, dtypes and block sizes."""
from __future__ import annotations

import errno
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from refcolor.cli import main
from refcolor.color import rgb_to_lab, uint8_to_tensor
from refcolor.inference import Colorizer
from refcolor.video import open_source


@pytest.fixture(scope="module")
def colorizer():
    return Colorizer("warp", size=(32, 48), device="cpu")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    import skimage

    path = tmp_path_factory.mktemp("ref") / "chelsea.png"
    Image.fromarray(skimage.data.chelsea()).save(path)
    return path


def colorize_ok(args, capsys) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(uint8_to_tensor(rgb))[:, 0].numpy()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=st.integers(16, 90), w=st.integers(16, 90), n=st.integers(1, 4), block=st.integers(1, 4),
       dtype=st.sampled_from(["uint8", "uint16", "float32"]), gray=st.booleans())
def test_colorizer_properties(colorizer, h, w, n, block, dtype, gray):
    import skimage

    colorizer.set_reference(skimage.data.astronaut())
    colorizer.block_size = block
    rng = np.random.default_rng(h * 1000 + w)
    base = rng.integers(0, 256, (n, h, w) if gray else (n, h, w, 3)).astype(np.uint8)
    frames = {"uint8": base, "uint16": base.astype(np.uint16) * 257, "float32": base.astype(np.float32) / 255}[dtype]
    out = colorizer.step(frames)
    assert out.shape == (n, h, w, 3) and out.dtype == np.uint8
    rgb_in = np.repeat(base[..., None], 3, -1) if gray else base
    # The output keeps the input's L (up to uint8 rounding and gamut clipping of the new chroma).
    assert np.median(np.abs(luminance(out) - luminance(rgb_in))) < 1.5


def test_tiny_frames(tmp_path, reference, capsys):
    from conftest import make_video

    clip = make_video(tmp_path / "tiny.mp4", n=3, width=16, height=16)
    out = tmp_path / "tiny_color.mp4"
    colorize_ok(["colorize", str(clip), "-r", str(reference), "-o", str(out), "-q", "--device", "cpu"], capsys)
    with open_source(out) as s:
        assert (s.info.width, s.info.height, s.info.num_frames) == (16, 16, 3)


def test_huge_frame(tmp_path, reference, capsys):
    """An 8K still (7680x4320) colorizes at the working size; chroma is up-sampled to 8K."""
    img = np.zeros((4320, 7680), np.uint8)
    img[:, :] = np.linspace(0, 255, 7680, dtype=np.uint8)[None]
    src = tmp_path / "8k.png"
    Image.fromarray(img).save(src)
    out = tmp_path / "8k_out"
    colorize_ok(["colorize", str(src), "-r", str(reference), "-o", str(out), "-q", "--size", "64x112", "--device", "cpu"], capsys)
    assert Image.open(next(out.glob("*.png"))).size == (7680, 4320)


def test_variable_frame_rate_keeps_timestamps(tmp_path, reference, capsys):
    import av

    path = tmp_path / "vfr.mkv"
    pts = [0, 40, 80, 200, 240, 400]  # ms: uneven gaps
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = Fraction(1, 1000)
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 1000)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "vfr_color.mkv"
    colorize_ok(["colorize", str(path), "-r", str(reference), "-o", str(out), "-q", "--size", "48x64", "--device", "cpu"], capsys)

    def times(p):
        with open_source(p) as src:
            return [round(float(f.pts * src.info.time_base), 3) for f in src]

    assert times(out) == times(path)


def test_ten_bit_source(tmp_path, reference, capsys):
    import av

    path = tmp_path / "10bit.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx265" if "libx265" in av.codecs_available else "libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 60 * i, np.uint8), format="rgb24").reformat(format="yuv420p10le")
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    out = tmp_path / "10bit_out"
    colorize_ok(["colorize", str(path), "-r", str(reference), "-o", str(out), "-q", "--size", "48x64", "--device", "cpu"], capsys)
    assert len(list(out.glob("*.png"))) == 3


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16"])
def test_unusual_reference_formats(tmp_path, reference, mode, capsys):
    from conftest import make_video

    clip = make_video(tmp_path / "c.mp4", n=2)
    rgb = Image.open(reference)
    if mode == "I;16":  # 16-bit gray: a gray reference, refused with the usual message
        ref = tmp_path / "ref16.png"
        Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)).save(ref)
        assert main(["colorize", str(clip), "-r", str(ref), "-o", str(tmp_path / "o"), "-q"]) == 2
        assert "color reference is needed" in capsys.readouterr().err
        return
    ref = tmp_path / ("ref.jpg" if mode == "CMYK" else "ref.png")
    (rgb.convert("CMYK") if mode == "CMYK" else rgb.convert("P", palette=Image.ADAPTIVE)).save(ref)
    colorize_ok(["colorize", str(clip), "-r", str(ref), "-o", str(tmp_path / "o"), "-q", "--size", "48x64", "--device", "cpu"], capsys)


def test_full_disk_leaves_nothing(tmp_path, reference, capsys, monkeypatch):
    from conftest import make_video

    from refcolor import video_write

    clip = make_video(tmp_path / "c.mp4", n=6)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def no_space(self, rgb, pts=None):
        raise video_write.RefcolorError(f"writing {self.path} failed: {OSError(errno.ENOSPC, 'No space left on device')}")

    monkeypatch.setattr(video_write.VideoWriter, "write", no_space)
    code = main(["colorize", str(clip), "-r", str(reference), "-o", str(out_dir / "x.mp4"), "-q", "--size", "48x64"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left" in err and "\n" not in err.strip()
    leftovers = [p for p in out_dir.rglob("*") if p.is_file() and p.suffix in (".mp4",)]
    assert not (out_dir / "x.mp4").exists() and not leftovers


def test_non_utf8_path(tmp_path, reference, capsys):
    import os

    from conftest import make_video

    name = os.fsdecode(b"r\xe9el-\xff")  # not valid UTF-8: surrogate-escaped on POSIX
    folder = tmp_path / name
    try:
        folder.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem refuses non-UTF-8 names")
    clip = make_video(folder / "clip.mp4", n=2)
    colorize_ok(["colorize", str(clip), "-r", str(reference), "-o", str(folder / "out.mp4"), "-q", "--size", "48x64", "--device", "cpu"], capsys)
    assert (folder / "out.mp4").is_file()


def test_reference_of_another_scene_still_colors(tmp_path, capsys):
    """A reference with nothing in common still gives a valid, colored output (no error)."""
    import skimage

    from conftest import make_video

    clip = make_video(tmp_path / "c.mp4", n=2)
    ref = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(ref)
    out = tmp_path / "o"
    colorize_ok(["colorize", str(clip), "-r", str(ref), "-o", str(out), "-q", "--size", "48x64", "--device", "cpu"], capsys)
    assert len(list(out.glob("*.png"))) == 2


def test_corrupt_video_message_is_readable(tmp_path, reference, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video at all")
    assert main(["colorize", str(bad), "-r", str(reference), "-o", str(tmp_path / "o.mp4"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"refcolor: error: not a readable video (not a video, or corrupt): {bad}: invalid data found when processing input"


def test_api_errors_name_python_arguments(tmp_path, reference, capsys):
    """The Python API says overwrite=True, the command line --overwrite (it said --overwrite to both)."""
    import refcolor
    from refcolor.errors import RefcolorError

    gray = tmp_path / "gray.png"
    Image.open(reference).convert("L").save(gray)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RefcolorError, match="pass overwrite=True") as info:
        refcolor.colorize(gray, reference, out, progress=False)
    assert "--overwrite" not in str(info.value)
    assert main(["colorize", str(gray), "-r", str(reference), "-o", str(out), "-q"]) == 2
    assert "use --overwrite to replace it" in capsys.readouterr().err


def test_size_rounding_is_said_and_one_frame_is_singular(tmp_path, reference, capsys):
    gray = tmp_path / "gray.png"
    Image.open(reference).convert("L").save(gray)
    assert main(["colorize", str(gray), "-r", str(reference), "-o", str(tmp_path / "out"), "-q", "--size", "50x70"]) == 0
    captured = capsys.readouterr()
    assert "note: working size 50x70 rounded to 48x72 (the network takes multiples of 8)" in captured.err
    # "1 frames" as a whole count; a rate such as "10.61 frames/s" must not match
    assert "1 frame in " in captured.out and not re.search(r"(?<![\d.])1 frames", captured.out)
    assert "working size 48x72" in captured.out
    assert main(["colorize", str(gray), "-r", str(reference), "-o", str(tmp_path / "o2"), "-q", "--size", "48x72"]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing to say when nothing was rounded


def test_colorize_help_lists_the_model_names(capsys):
    from refcolor.config import PRESETS, WARP_PRESETS

    with pytest.raises(SystemExit):
        main(["colorize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ", ".join(["default", *WARP_PRESETS, *PRESETS]) + ", or a .safetensors checkpoint" in text
    assert "warp-prop" in text


def test_onnx_backend_without_onnxruntime_names_the_extra(monkeypatch):
    import sys

    import torch

    from refcolor.errors import RefcolorError
    from refcolor.onnx_backend import OnnxStep

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(RefcolorError) as info:
        OnnxStep(torch.nn.Linear(1, 1))
    assert 'pip install "refcolor[onnx]"' in str(info.value) and "onnxscript" not in str(info.value)
