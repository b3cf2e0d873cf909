"""tools/chroma_gain.py: the rule that picks the output chroma gain, and the gain written into a checkpoint."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from refcolor.checkpoint import load_model, save_model
from refcolor.config import get_config
from refcolor.models.network import build_model
from refcolor.sequences import Sequence

_spec = importlib.util.spec_from_file_location("chroma_gain", Path(__file__).parents[1] / "tools" / "chroma_gain.py")
chroma_gain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chroma_gain)


def test_rule_takes_the_largest_gain_within_the_tolerance():
    table = {1.0: (31.00, 27.0), 1.02: (31.01, 27.5), 1.04: (30.985, 28.0), 1.06: (30.97, 28.6), 1.08: (31.2, 29.0)}
    assert chroma_gain.choose(table, 0.02) == 1.08  # the largest that holds, not the first that fails
    del table[1.08]
    assert chroma_gain.choose(table, 0.02) == 1.04
    assert chroma_gain.choose({1.0: (31.0, 27.0), 1.1: (30.0, 30.0)}, 0.02) == 1.0


def test_scored_gains_match_a_model_run_with_that_gain(tmp_path):
    """Scaling the captured ab equals running the checkpoint with chroma_gain set (the gain acts last)."""
    torch.manual_seed(0)
    ckpt = tmp_path / "m.safetensors"
    model = build_model(get_config("lite", pretrained=False, memory_grid=(2, 2), propagate_bias=0.05))
    save_model(model, ckpt)
    rng = np.random.default_rng(0)
    folder = tmp_path / "seq"
    folder.mkdir()
    import cv2

    base = rng.integers(0, 255, (8, 12, 3), dtype=np.uint8)
    for i in range(5):
        frame = cv2.resize(np.roll(base, i, axis=1), (96, 64), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"{i:05d}.png"), frame)
    seq = Sequence(name="seq", kind="frames", path=folder, num_frames=5, files=sorted(folder.glob("*.png")))
    table = chroma_gain.score_gains(str(ckpt), [seq], [1.0, 1.3], size=(32, 48))
    model.cfg = model.cfg.replace(chroma_gain=1.3)
    save_model(model, tmp_path / "g.safetensors")
    direct = chroma_gain.score_gains(str(tmp_path / "g.safetensors"), [seq], [1.0], size=(32, 48))
    assert abs(direct[1.0][0] - table[1.3][0]) < 0.05 and abs(direct[1.0][1] - table[1.3][1]) < 0.05
    assert table[1.3][1] > table[1.0][1]  # more chroma, more colorfulness
    assert load_model(tmp_path / "g.safetensors").cfg.chroma_gain == 1.3
