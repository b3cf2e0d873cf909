"""Known-answer tests of CDC (color distribution consistency, Liu et al.) in refcolor.eval.metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest

from refcolor.errors import RefcolorError
from refcolor.eval.metrics import CDC_STEPS, cdc, cdc_steps, channel_histograms, js_divergence

LN2 = math.log(2)


def solid(rgb, size=(6, 10)) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (*size, 3)).copy()


def test_histograms_sum_to_one_per_channel():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0, 0] = (255, 7, 0)
    h = channel_histograms(frame)
    assert h.shape == (3, 256) and np.allclose(h.sum(axis=1), 1.0)
    assert h[0, 255] == 0.25 and h[0, 0] == 0.75 and h[1, 7] == 0.25 and h[2, 0] == 1.0


def test_js_divergence_known_values():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    m = np.array([0.75, 0.25])
    expected = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    assert js_divergence(p, q) == pytest.approx(expected, abs=1e-12)
    assert js_divergence(q, p) == pytest.approx(expected, abs=1e-12)
    assert js_divergence(p, p) == 0.0
    assert js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(LN2, abs=1e-12)


def test_js_matches_scipy_on_real_looking_histograms():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    a = channel_histograms(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    b = channel_histograms(rng.integers(0, 120, (20, 30, 3), dtype=np.uint8))
    for c in range(3):
        assert js_divergence(a[c], b[c]) == pytest.approx(jensenshannon(a[c], b[c]) ** 2, abs=1e-12)


def test_identical_frames_give_zero():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    assert cdc([frame] * 6) == 0.0
    assert cdc([frame, frame[::-1, ::-1].copy()]) == 0.0  # the same colors moved: no change of distribution


def test_disjoint_single_color_frames():
    a, b = solid((10, 20, 30)), solid((200, 210, 220))
    assert cdc([a, b]) == pytest.approx(LN2, abs=1e-12)  # every channel disjoint: ln 2
    assert cdc([a, solid((10, 20, 99))]) == pytest.approx(LN2 / 3, abs=1e-12)  # one channel of three
    assert cdc([a, solid((10, 20, 99), size=(3, 4))]) == pytest.approx(LN2 / 3, abs=1e-12)  # sizes may differ


def test_steps_1_2_4_equally_weighted():
    a, b = solid((0, 0, 0)), solid((255, 255, 255))
    assert CDC_STEPS == (1, 2, 4)
    # a a a a b: k=1 -> 1 of 4 pairs differs, k=2 -> 1 of 3, k=4 -> 1 of 1
    per_step = cdc_steps([a, a, a, a, b])
    assert per_step == pytest.approx({1: LN2 / 4, 2: LN2 / 3, 4: LN2}, abs=1e-12)
    assert cdc([a, a, a, a, b]) == pytest.approx((1 / 4 + 1 / 3 + 1) / 3 * LN2, abs=1e-12)
    # 3 frames: k=4 has no pair and is left out
    assert cdc_steps([a, a, b]) == pytest.approx({1: LN2 / 2, 2: LN2}, abs=1e-12)
    assert cdc([a, a, b]) == pytest.approx(0.75 * LN2, abs=1e-12)


def test_bad_input_is_an_error():
    with pytest.raises(RefcolorError, match="at least 2 frames"):
        cdc([solid((1, 2, 3))])
    with pytest.raises(RefcolorError, match="no step"):
        cdc([solid((1, 2, 3))] * 2, steps=(4,))
    with pytest.raises(RefcolorError, match="uint8"):
        cdc([np.zeros((4, 4, 3), np.float32)] * 2)
