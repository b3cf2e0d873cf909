"""Baselines of refcolor.eval.baselines on real DAVIS frames: gray, global transfer, welsh, a model."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from refcolor.errors import RefcolorError
from refcolor.eval.baselines import (GlobalTransfer, GrayMethod, ModelMethod, ModelSpec, WelshTransfer, build_method,
                                     gray_from_rgb, jittered_samples, local_std, parse_model_spec, rgb_to_lab_np)
from refcolor.eval.metrics import colorfulness, psnr

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIS = DATA / "davis16-dev"
needs_data = pytest.mark.skipif(not DAVIS.is_dir(), reason=f"shared data not found at {DAVIS}")


def frame(seq: str, i: int, size: tuple[int, int] = (216, 384)) -> np.ndarray:
    img = cv2.imread(str(DAVIS / seq / f"{i:05d}.jpg"), cv2.IMREAD_COLOR)
    assert img is not None
    return np.ascontiguousarray(cv2.resize(img[:, :, ::-1], size[::-1], interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference = blackswan frame 0, gray input = L of frame 25, ground truth frame 25)."""
    if not DAVIS.is_dir():
        pytest.skip(f"shared data not found at {DAVIS}")
    ref, gt = frame("blackswan", 0), frame("blackswan", 25)
    return ref, gray_from_rgb(gt), gt


def l_of(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab_np(rgb)[..., 0]


@needs_data
def test_gray_input_keeps_l_and_has_no_color(pair):
    _, gray, gt = pair
    assert colorfulness(gray) < 0.5
    assert np.abs(l_of(gray) - l_of(gt)).mean() < 0.5  # only uint8 rounding


@needs_data
def test_gray_baseline(pair):
    ref, gray, _ = pair
    out = list(GrayMethod().colorize_sequence([gray, gray], ref))
    assert len(out) == 2 and out[0].shape == gray.shape and out[0].dtype == np.uint8
    assert colorfulness(out[0]) < 0.5
    assert np.abs(l_of(out[0]) - l_of(gray)).max() < 1.0


@needs_data
def test_global_transfer_gives_reference_mean_chroma(pair):
    ref, gray, gt = pair
    out = next(GlobalTransfer().colorize_sequence(iter([gray]), ref))
    ref_ab = rgb_to_lab_np(ref)[..., 1:].reshape(-1, 2).mean(axis=0)
    lab = rgb_to_lab_np(out)
    # the same ab everywhere (up to uint8 rounding and gamut clipping at extreme L)
    assert np.abs(np.median(lab[..., 1:].reshape(-1, 2), axis=0) - ref_ab).max() < 1.0
    assert np.abs(lab[..., 1:].reshape(-1, 2).mean(axis=0) - ref_ab).max() < 2.0
    assert np.abs(lab[..., 0] - l_of(gray)).mean() < 0.5
    assert colorfulness(out) > 3.0
    assert psnr(out, gt) > psnr(gray, gt)  # the mean chroma is closer than none


@needs_data
def test_welsh_colors_and_keeps_l(pair):
    ref, gray, gt = pair
    welsh = WelshTransfer()
    prepared = welsh.prepare(ref)
    assert 180 <= len(prepared["l"]) <= 220  # ~200 jittered samples
    welsh.colorize_frame(gray, prepared)  # warm-up
    start = time.perf_counter()
    out = welsh.colorize_frame(gray, prepared)
    elapsed = time.perf_counter() - start
    assert out.shape == gray.shape and out.dtype == np.uint8
    assert colorfulness(out) > 10.0
    assert np.abs(l_of(out) - l_of(gray)).mean() < 1.5
    assert elapsed < 2.0, f"welsh took {elapsed:.2f} s for one 216x384 frame (target < 0.2 s on an idle CPU)"
    again = next(WelshTransfer().colorize_sequence([gray], ref))
    assert np.array_equal(out, again)  # fixed seed: deterministic


def test_jittered_samples_cover_the_grid():
    idx = jittered_samples(216, 384, 200, np.random.default_rng(0))
    assert 180 <= len(idx) <= 220
    assert len(set(idx.tolist())) == len(idx)
    ys, xs = idx // 384, idx % 384
    assert ys.min() < 30 and ys.max() > 186 and xs.min() < 30 and xs.max() > 354


def test_local_std_known_answers():
    flat = np.full((10, 12), 50.0, np.float32)
    assert np.allclose(local_std(flat), 0.0, atol=1e-3)
    stripes = np.tile(np.array([0.0, 100.0], np.float32), (10, 6))
    assert local_std(stripes)[5, 5] == pytest.approx(np.std([0, 100, 0, 100, 0]), rel=1e-3)


def test_build_method_names_and_errors():
    assert build_method("gray").name == "gray"
    assert build_method("Global Transfer").name == "global transfer"
    assert build_method("reinhard").name == "global transfer"
    assert build_method("welsh").name == "welsh"
    with pytest.raises(RefcolorError, match="not found|unknown model"):
        build_method("model:/nonexistent/x.safetensors", device="cpu")
    with pytest.raises(RefcolorError):
        WelshTransfer(samples=0)
    with pytest.raises(RefcolorError, match="uint8"):
        next(GrayMethod().colorize_sequence([np.zeros((4, 4, 3), np.float32)], np.zeros((4, 4, 3), np.uint8)))


def test_exact_rgb_suffix_is_the_same_model_with_the_kornia_conversion():
    # issue 18: the previous default (kornia Lab -> RGB) evaluated beside the new one in one run
    assert parse_model_spec("warp@exact-rgb") == ModelSpec("warp", True, "warp (exact RGB)")
    assert parse_model_spec("warp") == ModelSpec("warp", False, "warp")
    assert parse_model_spec("runs/a@2/best.safetensors") == ModelSpec("runs/a@2/best.safetensors", False, "best")
    fast = build_method("warp", device="cpu", size=(64, 112))
    exact = build_method("model:warp@exact-rgb", device="cpu", size=(64, 112))
    assert isinstance(exact, ModelMethod) and exact.name == "warp (exact RGB)" and exact.name != fast.name
    assert exact.colorizer.exact_rgb and not fast.colorizer.exact_rgb
    assert type(exact.colorizer.model) is type(fast.colorizer.model) and exact.spec == "warp@exact-rgb"


def test_unknown_model_suffix_is_a_one_line_error(tmp_path, capsys):
    from refcolor.cli import main

    with pytest.raises(RefcolorError, match="unknown model suffix '@fast'.*@exact-rgb"):
        build_method("warp@fast", device="cpu")
    (tmp_path / "seq").mkdir()
    cv2.imwrite(str(tmp_path / "seq" / "0.png"), np.full((16, 16, 3), 128, np.uint8))
    code = main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--model", "warp@fast", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("refcolor: error: unknown model suffix '@fast'")


@needs_data
def test_warp_model_method_streams_blocks():
    ref = frame("dog", 0, (64, 112))
    grays = [gray_from_rgb(frame("dog", i, (64, 112))) for i in range(4)]
    method = build_method("warp", device="cpu", size=(64, 112))
    assert isinstance(method, ModelMethod) and method.name == "warp" and method.block_size == 3
    out = list(method.colorize_sequence(iter(grays), ref))  # blocks of 3 + 1
    assert len(out) == 4 and all(o.shape == (64, 112, 3) for o in out)
    assert colorfulness(out[0]) > 5.0
    assert np.abs(l_of(out[0]) - l_of(grays[0])).mean() < 1.5
    method.block_size = 2
    assert np.array_equal(list(method.colorize_sequence(grays, ref))[3], out[3])  # the warp has no memory
