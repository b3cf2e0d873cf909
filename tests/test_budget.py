"""Huge working sizes: refused at once, in one line, with the estimate and the largest size that fits."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from refcolor import budget
from refcolor.errors import RefcolorError
from refcolor.inference import Colorizer


@pytest.fixture(scope="module")
def warp():
    from refcolor.checkpoint import load_model
    import torch

    return load_model("warp", torch.device("cpu"))


def test_huge_size_fails_at_once_in_one_line_from_the_cli(tmp_path, small_video):
    from PIL import Image

    ref = tmp_path / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(ref)
    out = tmp_path / "out.mp4"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "refcolor.cli", "colorize", str(small_video), "-r", str(ref),
                          "-o", str(out), "--size", "2160x3840", "--model", "warp", "--device", "cpu", "--quiet"],
                         capture_output=True, text=True, timeout=170)
    assert time.perf_counter() - start < 120  # imports and the model load; no frame is colorized
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "2160x3840 is too large" in lines[0] and "per frame" in lines[0] and "--size " in lines[0]
    assert not out.exists()


def test_the_suggested_size_fits_and_keeps_the_aspect(warp):
    with pytest.raises(RefcolorError) as err:
        budget.check_budget(warp, (2160, 3840))
    rows, cols = (int(v) for v in str(err.value).rsplit("--size ", 1)[1].rstrip(")").split("x"))
    assert rows % 8 == 0 and cols % 8 == 0 and 216 <= rows < 2160
    assert abs(cols / rows - 3840 / 2160) < 0.02
    budget.check_budget(warp, (rows, cols))  # fits
    with pytest.raises(RefcolorError):
        budget.check_budget(warp, (rows + 8, round(cols * (rows + 8) / rows / 8) * 8))


def test_default_and_moderate_sizes_are_accepted():
    Colorizer("warp", size=(432, 768), device="cpu")
    Colorizer("lite", size=(432, 768), device="cpu")
    c = Colorizer("warp", device="cpu")  # the default: 216 rows from the first frame
    c.set_reference(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    assert c.step(np.zeros((1, 1080, 1920), np.uint8)).shape == (1, 1080, 1920, 3)
    assert tuple(c.size) == (216, 384)


def test_memory_threshold_comes_from_the_machine(monkeypatch, warp):
    assert budget.available_gigabytes(budget.torch.device("cpu")) > 0
    monkeypatch.setattr(budget, "available_gigabytes", lambda device: 0.5)
    with pytest.raises(RefcolorError, match=r"GB of memory \(0.5 GB available"):
        budget.check_budget(warp, (432, 768))
    budget.check_budget(warp, (216, 384))


def test_time_limit_is_an_environment_setting(monkeypatch, warp):
    monkeypatch.setattr(budget, "available_gigabytes", lambda device: 1e6)
    with pytest.raises(RefcolorError, match="min per frame"):
        budget.check_budget(warp, (2160, 3840))
    monkeypatch.setenv("REFCOLOR_MAX_SECONDS_PER_FRAME", "0")  # 0: no time limit
    budget.check_budget(warp, (2160, 3840))
    monkeypatch.setenv("REFCOLOR_MAX_SECONDS_PER_FRAME", "soon")
    with pytest.raises(RefcolorError, match="not a number"):
        budget.check_budget(warp, (2160, 3840))


def test_work_grows_with_the_square_of_the_pixels_and_the_references(warp):
    small, large = budget.estimate(warp, (216, 384)), budget.estimate(warp, (432, 768))
    assert 12 < large.gmacs / small.gmacs < 16  # correlation x16, convolutions x4
    two_refs = budget.estimate(warp, (216, 384), ref_pixels=2 * 216 * 384)
    assert two_refs.gmacs > 1.8 * small.gmacs
    # the warp's correlation: h/4 grid, 176 key channels
    assert budget.model_heads(warp) == ([budget.Head(4, 176)], "warp")


def test_default_size_of_an_extremely_wide_frame_is_checked_too(monkeypatch):
    monkeypatch.setattr(budget, "available_gigabytes", lambda device: 1e6)
    c = Colorizer("warp", device="cpu")
    c.set_reference(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    with pytest.raises(RefcolorError, match="too large"):
        c.step(np.zeros((1, 16, 7680), np.uint8))  # 216 rows -> 216 x 103680


def test_propagation_is_counted_and_a_window_counts_less():
    from refcolor.config import get_config
    from refcolor.models.network import build_model

    cfg = get_config("lite", pretrained=False)
    plain = budget.estimate(build_model(cfg), (216, 384))
    nonlocal_read = budget.estimate(build_model(cfg.replace(propagate_bias=0.05)), (216, 384))
    windowed = budget.estimate(build_model(cfg.replace(propagate_bias=0.05, propagate_window=4)), (216, 384))
    # the non-local read doubles head 1's reference positions; a window adds its halo only
    assert nonlocal_read.gmacs > 1.5 * plain.gmacs
    assert plain.gmacs < windowed.gmacs < 1.1 * plain.gmacs
