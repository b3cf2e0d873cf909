"""Stage 1 (train/matching.py): its cached key path is the network's head 1; pairs like evaluation."""
import numpy as np
import torch

from refcolor.config import get_config
from refcolor.models.network import build_model
from refcolor.train.matching import encode_frames, matching_keys, sample_pair


def test_cached_key_path_is_head_one():
    torch.manual_seed(0)
    net = build_model(get_config("lite", pretrained=False)).eval()
    with torch.no_grad():
        net.correspondence.head1.weight.normal_(std=0.1)  # a head 1 that matters
    rgb = (np.random.default_rng(0).random((2, 32, 48, 3)) * 255).astype(np.uint8)
    cached = encode_frames(net, rgb)
    with torch.no_grad():
        keys = matching_keys(net, cached["raw"].float(), cached["head1"].float())
        from refcolor.color import normalize_lab, rgb_to_lab

        lab = normalize_lab(rgb_to_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255))
        heads, _, _, _ = net._features(lab[:, :1], None, 1)
    # identical up to the fp16 cache
    assert keys.shape == heads[0].shape
    assert (keys - heads[0]).abs().max() < 5e-3


def test_pairs_are_apart_and_never_the_same_frame():
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(2000):
        r, t = sample_pair(rng, n=40, stride=2, gap_min=5)
        assert r != t and abs(r - t) >= 3  # 3 cache steps of 2 frames >= 5 frames
        gaps.append(abs(r - t))
    assert max(gaps) >= 35  # gaps reach across the whole sequence
    r, t = sample_pair(rng, n=2, stride=2, gap_min=5)  # too short for the gap: still two frames
    assert r != t


def test_optimizer_gives_tau_its_own_rate_and_only_trains_the_key_path():
    from refcolor.train.matching import TRAINED, MatchingConfig, matching_optimizer

    net = build_model(get_config("lite", pretrained=False))
    cfg = MatchingConfig(init_from="", lr=1e-3, lr_scalars=3e-2, lr_tau=3e-4)
    opt = matching_optimizer(net, cfg)
    names = {id(p): n for n, p in net.named_parameters()}
    by_lr = {g["lr"]: sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups}
    assert by_lr[3e-4] == ["correspondence.tau_logit"]
    assert by_lr[3e-2] == ["correspondence.key_mix_logit"]
    assert by_lr[1e-3] and all(n.startswith("correspondence.key_proj.") for n in by_lr[1e-3])
    trained = {n for group in by_lr.values() for n in group}
    assert trained == {n for n in names.values() if n.startswith(TRAINED)}
    # lr_tau < 0: tau shares the scalars' rate
    opt = matching_optimizer(net, MatchingConfig(init_from="", lr_scalars=3e-2))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 3e-2, 3e-2]


def test_cache_folder_can_be_shared_between_runs(tmp_path, monkeypatch):
    """``cache``: a second run from the same frozen taps reads the first run's cache folder."""
    from pathlib import Path
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from refcolor.train import matching

    folders = []

    def fake_cache(model, seq, indices, size, folder, keep_rgb):
        folders.append(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"raw": torch.zeros(len(indices), 1)}, str(folder / f"{seq.name}.safetensors"))
        return folder / f"{seq.name}.safetensors"

    seq = SimpleNamespace(name="clip", num_frames=20, kind="video")
    monkeypatch.setattr(matching, "build_cache", fake_cache)
    monkeypatch.setattr(matching, "discover", lambda *a, **k: SimpleNamespace(held_out=[], sequences=[seq]))
    for cache, expected in ((str(tmp_path / "shared"), tmp_path / "shared"), ("", tmp_path / "run" / "cache")):
        trainer = matching.MatchingTrainer.__new__(matching.MatchingTrainer)
        trainer.cfg = matching.MatchingConfig(init_from="", out=str(tmp_path / "run"), cache=cache)
        trainer.out, trainer.model, trainer.size = Path(trainer.cfg.out), None, (216, 384)
        trainer._prepare_data()
        assert folders[-1] == expected and len(trainer.train) == 1
        assert trainer.out.is_dir()  # the run's own files (logs, checkpoints) have their folder


def test_command_line_takes_the_cache_folder(capsys):
    """tools/train_matching.py --cache is an option of the command (a run stops at the missing checkpoint)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_matching_tool", Path(__file__).parents[2] / "tools" / "train_matching.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--init-from", "/nonexistent.safetensors", "--data", "/nonexistent", "--out", "/nonexistent-run",
                      "--cache", "/nonexistent-cache", "--steps", "1"]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
