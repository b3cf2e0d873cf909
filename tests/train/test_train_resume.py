"""Resume exactness: 2k steps in one go == k steps, interruption, --resume, k more steps (bitwise)."""
import dataclasses
import json

import torch

from refcolor.checkpoint import read_checkpoint
from refcolor.train.recipe import TrainConfig
from refcolor.train.state import latest_checkpoint
from refcolor.train.trainer import train
from test_train_data import frame_folder


def tiny_config(tmp_path, out: str, **kw) -> TrainConfig:
    root = tmp_path / "data"
    if not root.exists():
        frame_folder(root / "a", 7, h=40, w=56)
        frame_folder(root / "b", 5, h=40, w=56, seed=3)
    base = dict(
        preset="lite", model={"pretrained": False}, data=[str(root), "skimage"], height=32, width=48, clip_len=4,
        block_size=2, steps=4, batch_size=1, w_perc=0.05, perceptual="lite0", w_adv=0.2, adv_start=0,
        w_chroma=0.2, aux_frames=2, disc_channels=8, flow="dis", num_workers=0, threads=1, deterministic=True,
        log_every=1, val_every=1000, checkpoint_every=1000, out=str(tmp_path / out), seed=5, ema_decay=0.9,
    )
    base.update(kw)
    return TrainConfig(**base).validate()


def weights(run_dir):
    _, tensors, _ = read_checkpoint(latest_checkpoint(run_dir) / "model.safetensors")
    state = torch.load(latest_checkpoint(run_dir) / "state.pt", weights_only=True)
    return tensors, state


def test_resume_is_bitwise_exact(tmp_path):
    k = 2
    straight = train(tiny_config(tmp_path, "straight", steps=2 * k), progress=False)
    assert straight.step == 2 * k and not straight.stopped

    cfg = tiny_config(tmp_path, "resumed", steps=2 * k)
    first = train(cfg, progress=False, stop_at=k)
    assert first.stopped and first.step == k
    assert latest_checkpoint(first.run_dir).name == f"step-{k:06d}"
    second = train(dataclasses.replace(cfg), resume=True, progress=False)
    assert second.step == 2 * k

    a, sa = weights(straight.run_dir)
    b, sb = weights(second.run_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[n], b[n]) for n in a), [n for n in a if not torch.equal(a[n], b[n])][:5]
    assert all(torch.equal(sa["disc"][n], sb["disc"][n]) for n in sa["disc"])
    assert sa["ema"] and all(torch.equal(sa["ema"][n], sb["ema"][n]) for n in sa["ema"])
    # model.safetensors of the run holds the EMA weights, the checkpoint the raw ones
    _, exported, _ = read_checkpoint(second.run_dir / "model.safetensors")
    assert all(torch.equal(exported[n], sb["ema"][n]) for n in exported)
    # the losses logged after the resume are the ones the straight run logged at those steps
    assert [r["total"] for r in straight.history[k:]] == [r["total"] for r in second.history]
    cfg_saved = json.loads((second.run_dir / "config.json").read_text())
    assert cfg_saved["perceptual_network"].startswith("efficientnet_lite0")
    assert (second.run_dir / "loss.png").is_file()
    rows = (second.run_dir / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * k  # header + one row per step, no duplicate after the resume
