"""Resume: a run killed mid-way and resumed gives the very frames of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.checkpoint import save_model
from refcolor.cli import main
from refcolor.config import get_config
from refcolor.models.network import build_model
from refcolor.video import open_source

FRAMES, SEGMENT = 36, 6


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A gray 36-frame clip of bikes.mp4, a color reference, and a lite checkpoint whose linkage
    memory matters (random weights: what counts here is that state is carried exactly)."""
    from refcolor.demo import bikes_path
    from refcolor.video_write import VideoWriter

    root = tmp_path_factory.mktemp("resume")
    with open_source(bikes_path()) as source:
        frames = [f.rgb for f in source if 80 <= f.index < 80 + FRAMES]
    clip = root / "gray.mp4"
    with VideoWriter(clip, fps=25, width=640, height=272) as w:
        for rgb in frames:
            w.write(np.repeat(rgb.mean(-1, keepdims=True).astype(np.uint8), 3, -1))
    ref = root / "ref.png"
    Image.fromarray(frames[0]).save(ref)
    torch.manual_seed(0)
    ckpt = save_model(build_model(get_config("lite", pretrained=False)), root / "lite-random.safetensors")
    return clip, ref, ckpt


def args(job, out: Path) -> list[str]:
    clip, ref, ckpt = job
    return ["colorize", str(clip), "-r", str(ref), "-o", str(out), "--model", str(ckpt), "--size", "64x152",
            "--segment", str(SEGMENT), "--block", "3", "--device", "cpu", "-q"]


def decoded(path: Path) -> list[np.ndarray]:
    with open_source(path) as source:
        return [f.rgb for f in source]


def test_killed_run_resumes_to_identical_frames(job, tmp_path):
    straight = tmp_path / "straight.mp4"
    assert main(args(job, straight)) == 0
    out = tmp_path / "resumed.mp4"
    work = tmp_path / ".resumed.mp4.refcolor-work"
    proc = subprocess.Popen([sys.executable, "-m", "refcolor.cli", *args(job, out)], env=os.environ.copy())
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if len(json.loads((work / "state.json").read_text())["segments"]) >= 2:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGKILL)  # as hard as a power loss
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and work.is_dir()
    done = len(json.loads((work / "state.json").read_text())["segments"])
    assert 2 <= done < FRAMES // SEGMENT
    assert main(args(job, out)) == 2  # refuses to start over silently
    assert main([*args(job, out), "--resume"]) == 0
    assert not work.exists()
    a, b = decoded(straight), decoded(out)
    assert len(a) == len(b) == FRAMES
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_resume_refuses_a_different_job(job, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    work = tmp_path / ".o.mp4.refcolor-work"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"version": 1, "signature": "other", "segments": []}))
    assert main([*args(job, out), "--resume"]) == 2
    assert "another input or other settings" in capsys.readouterr().err


def test_resume_never_replaces_a_finished_output(job, tmp_path, capsys):
    """--resume with a finished output and no interrupted run of it: refused, the file byte for byte kept
    (it used to start a new run and replace a 720-frame result by a 1-frame one)."""
    from conftest import make_video

    out = make_video(tmp_path / "o.mp4", n=30)  # a finished result of another input
    before = out.read_bytes()
    assert main([*args(job, out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "already exists and is finished" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    # a work folder beside it from another input or other settings is refused too, not reused
    work = tmp_path / ".o.mp4.refcolor-work"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"version": 1, "signature": "other", "segments": []}))
    assert main([*args(job, out), "--resume"]) == 2
    assert "another input or other settings" in capsys.readouterr().err
    assert out.read_bytes() == before and work.is_dir()


def test_ctrl_c_says_how_to_resume(job, tmp_path, capsys, monkeypatch):
    import shlex

    import refcolor.pipeline as pipeline

    flush, calls = pipeline._flush, []

    def interrupted_flush(*a, **kw):  # Ctrl-C after two finished segments (blocks of 3, segments of 6)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return flush(*a, **kw)

    monkeypatch.setattr(pipeline, "_flush", interrupted_flush)
    out = tmp_path / "c.mp4"
    work = tmp_path / ".c.mp4.refcolor-work"
    assert main(args(job, out)) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("refcolor: interrupted; 12 finished frames kept in ")
    assert str(work) in err and work.is_dir() and not out.exists()
    hint = shlex.split(err.split("run: ", 1)[1])
    assert hint[0] == "refcolor" and hint[-1] == "--resume"
    monkeypatch.setattr(pipeline, "_flush", flush)
    # the checkpoint changed since (retrained at the same path): another model, not continued
    ckpt = job[2]
    st = ckpt.stat()
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert main(hint[1:]) == 2
        assert "another input or other settings" in capsys.readouterr().err
    finally:
        os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns))
    # a finished output that the interrupted run was not asked to replace is not replaced by --resume
    out.write_bytes(b"finished elsewhere")
    assert main(hint[1:]) == 2 and out.read_bytes() == b"finished elsewhere"
    assert "was not started to replace it" in capsys.readouterr().err
    out.unlink()
    assert main(hint[1:]) == 0  # the printed command continues the run
    assert not work.exists() and len(decoded(out)) == FRAMES


def test_ctrl_c_in_a_batch_says_to_rerun_it(job, tmp_path, capsys, monkeypatch):
    """A batch resumes its unfinished videos by itself: the hint is the same command, no --resume."""
    import shlex
    import shutil

    import refcolor.pipeline as pipeline

    clip, ref, ckpt = job
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(clip, archive / "a.mp4")
    flush, calls = pipeline._flush, []

    def interrupted_flush(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return flush(*a, **kw)

    monkeypatch.setattr(pipeline, "_flush", interrupted_flush)
    command = ["colorize", str(archive), "-r", str(ref), "-o", str(tmp_path / "out"), "--model", str(ckpt),
               "--size", "64x152", "--segment", str(SEGMENT), "--block", "3", "--device", "cpu", "-q"]
    assert main(command) == 130
    err = capsys.readouterr().err.strip()
    assert "6 finished frames kept in" in err and str(tmp_path / "out" / ".a.mp4.refcolor-work") in err
    assert shlex.split(err.split("run: ", 1)[1]) == ["refcolor", *command]
    monkeypatch.setattr(pipeline, "_flush", flush)
    assert main(command) == 0 and len(decoded(tmp_path / "out" / "a.mp4")) == FRAMES


@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".avi"])
def test_a_segmented_output_joins_in_every_container(suffix, tmp_path):
    """Matroska stores no decoding times: the first packets of each .mkv segment came back without
    a dts, and joining a second segment failed ('... returned 22'). A 14-frame clip in segments of 6
    must join into the times of an unsegmented run and its frames up to the encoder (each segment
    starts its own group of pictures, so the lossy coding differs a little)."""
    from conftest import write_gray_clip

    frames = [np.full((48, 64, 3), 10 + 18 * i, np.uint8) for i in range(14)]  # a ramp: each frame its own
    for rgb in frames:
        rgb[:12, :16] = 255
    clip = write_gray_clip(tmp_path / "clip.mp4", frames)
    ref = tmp_path / "ref.png"
    Image.fromarray(np.array([[[200, 30, 30], [30, 30, 200]]], np.uint8).repeat(48, 0).repeat(32, 1)).save(ref)
    common = ["-r", str(ref), "--model", "warp", "--size", "48x64", "--device", "cpu", "-q"]
    straight, joined = tmp_path / f"straight{suffix}", tmp_path / f"joined{suffix}"
    assert main(["colorize", str(clip), "-o", str(straight), *common]) == 0
    assert main(["colorize", str(clip), "-o", str(joined), "--resume", "--segment", "6", *common]) == 0
    with open_source(straight) as a, open_source(joined) as b:
        frames_a, frames_b = list(a), list(b)
    assert len(frames_b) == len(frames_a) == 14
    diff = lambda x, y: np.abs(x.rgb.astype(int) - y.rgb).mean()  # noqa: E731
    assert max(diff(x, y) for x, y in zip(frames_a, frames_b)) < 4.0  # measured up to 2.4
    assert min(diff(x, y) for x, y in zip(frames_a, frames_a[1:])) > 8.0  # measured 9.8 and up: a frame out of place shows
    assert [f.pts for f in frames_b] == [f.pts for f in frames_a]
    assert len({f.pts for f in frames_b}) == 14
    assert not (tmp_path / f".joined{suffix}.refcolor-work").exists()


def test_work_folder_saves_a_memory_of_several_tensors(tmp_path):
    """Propagation's memory is a dict of tensors (models/network.py); resume saves and reads it."""
    import torch

    from refcolor.resume import WorkFolder

    out = tmp_path / "out.mp4"
    work = WorkFolder(out, "sig")
    work.start()
    seg = work.segment_path(".mp4")
    seg.write_bytes(b"x")
    memory = {"tokens": torch.rand(1, 4, 3), "keys": torch.rand(1, 5, 6), "ab": torch.rand(1, 2, 6)}
    work.commit(seg, 0, 3, 0, "1/25", memory)
    back = WorkFolder(out, "sig").load()
    assert set(back) == set(memory) and all(torch.equal(back[k], memory[k]) for k in memory)
