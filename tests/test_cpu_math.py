"""Flushing denormals leaves refcolor's output unchanged (it only drops terms below 1e-37)."""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from refcolor.cpu_math import denormals_flushed, flush_denormals, set_flush_denormal_everywhere
from refcolor.inference import Colorizer


def _frames():
    rgb = data.astronaut()
    ref = (resize(rgb, (96, 96), anti_aliasing=True) * 255).round().astype(np.uint8)
    gray = np.stack([np.roll(ref, s, axis=1).mean(-1).astype(np.uint8) for s in (0, 5, 11)])
    return ref, gray


def _flushed_parts() -> list[bool]:
    """Which quarters of a parallel op on denormal inputs came out flushed to zero: with two
    intra-op threads the first half is computed by the calling thread, the second by its worker."""
    x = torch.full((1 << 22,), 71362, dtype=torch.int32).view(torch.float32)  # 1.0e-40, set bitwise
    return [bool((part == 0).all()) for part in (x * 1.0).chunk(4)]


@pytest.mark.parametrize("preset", ["warp", "lite"])
def test_flush_denormal_output_is_identical(preset):
    ref, gray = _frames()
    c = Colorizer(preset, device="cpu", size=(96, 96))
    c.set_reference(ref)
    outs = []
    for flush in (False, True, False):
        c.flush_denormals = flush
        c.reset_memory()
        outs.append(c.step(gray))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def test_flush_denormals_turns_flushing_on():
    torch.set_flush_denormal(False)
    try:
        assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
        flush_denormals()
        assert torch.tensor([1e-40], dtype=torch.float32).item() == 0.0  # a denormal literal flushes
    finally:
        torch.set_flush_denormal(False)  # the process default, as the rest of the suite expects


@pytest.mark.skipif(not flush_denormals() or not set_flush_denormal_everywhere(False),
                    reason="no denormal control for every intra-op thread here")
def test_flush_denormals_reaches_the_intra_op_threads_that_already_exist():
    # torch.set_flush_denormal alone sets the calling thread's flag only: the half of the op
    # computed by the existing OpenMP worker kept its denormals (Colorizer's flake, commit e487222)
    torch.set_num_threads(2)
    assert _flushed_parts() == [False] * 4  # runs the worker: it exists before the flag is set
    assert flush_denormals()
    assert _flushed_parts() == [True] * 4
    assert set_flush_denormal_everywhere(False)
    assert _flushed_parts() == [False] * 4


@pytest.mark.skipif(not flush_denormals() or not set_flush_denormal_everywhere(False),
                    reason="no denormal control for every intra-op thread here")
def test_colorizer_runs_the_network_flushed_on_every_thread_and_sets_it_back():
    ref, gray = _frames()
    torch.set_num_threads(2)
    c = Colorizer("warp", device="cpu", size=(32, 32))
    c.set_reference(ref)
    seen = []
    step = c._step

    def probed(*args):
        seen.append(_flushed_parts())
        return step(*args)

    c._step = probed
    c.step(gray)
    assert seen == [[True] * 4]  # one block of 3 frames, run with every thread flushing
    assert _flushed_parts() == [False] * 4  # and the caller's setting back afterwards
    with denormals_flushed():  # a caller that flushes keeps flushing
        c.step(gray)
        assert _flushed_parts() == [True] * 4


def test_without_a_way_to_reach_the_workers_nothing_is_mixed_and_the_callers_flag_is_kept(monkeypatch):
    import refcolor.cpu_math as cpu_math

    monkeypatch.setattr(cpu_math, "_share_fp_env", lambda: None)  # another OpenMP runtime, say
    torch.set_num_threads(2)
    assert not cpu_math.set_flush_denormal_everywhere(True)
    assert not cpu_math.flushing()  # off rather than set on this thread only
    torch.set_flush_denormal(True)  # a caller that flushes its own thread
    with cpu_math.denormals_flushed() as on:
        assert not on
    assert cpu_math.flushing()
