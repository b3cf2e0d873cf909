"""Safetensors checkpoints: config in metadata, bitwise round trip, clear errors."""
import json

import pytest
import torch
from safetensors.torch import save_file

from refcolor.checkpoint import load_model, read_checkpoint, save_model
from refcolor.config import get_config
from refcolor.errors import RefcolorError
from refcolor.models.network import build_model


@pytest.mark.parametrize("flags", [{}, {"use_linkage": False, "double_head": False}])
def test_round_trip_is_bitwise(tmp_path, flags):
    torch.manual_seed(0)
    net = build_model(get_config("lite", pretrained=False, **flags)).eval()
    path = save_model(net, tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.cfg == net.cfg.replace(pretrained=False)
    l = torch.rand(1, 4, 1, 32, 48) * 2 - 1
    ref = torch.rand(1, 3, 32, 48) * 2 - 1
    with torch.inference_mode():
        a = torch.cat([o.ab for o in net(l, ref, 2)], 1)
        b = torch.cat([o.ab for o in loaded(l, ref, 2)], 1)
    assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*partial"))


def test_fp16_checkpoint_loads_as_float32(tmp_path):
    net = build_model(get_config("lite", pretrained=False))
    path = save_model(net, tmp_path / "half.safetensors", dtype=torch.float16)
    loaded = load_model(path)
    assert next(loaded.parameters()).dtype == torch.float32


def one_line_error(path) -> str:
    with pytest.raises(RefcolorError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    assert "not a refcolor checkpoint" in one_line_error(path)


def test_wrong_metadata(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "refcolor-1", "config": json.dumps({"bogus": 1})})
    assert "bogus" in one_line_error(path)
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "refcolor-1", "config": "{not json"})
    assert "JSON" in one_line_error(path)


def test_weights_of_another_preset(tmp_path):
    net = build_model(get_config("lite", pretrained=False))
    path = save_model(net, tmp_path / "lite.safetensors")
    cfg, tensors, meta = read_checkpoint(path)
    meta["config"] = get_config("lite", pretrained=False, feat_channels=64).to_json()
    save_file(tensors, str(path), metadata=meta)
    assert "shape" in one_line_error(path) or "match" in one_line_error(path)


def test_corrupt_and_pickle_files_are_refused(tmp_path):
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x00" * 100)
    assert "safetensors" in one_line_error(corrupt)
    pickled = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, pickled)
    assert "safetensors files only" in one_line_error(pickled)
    assert "not found" in one_line_error(tmp_path / "missing.safetensors")


def test_default_model_is_lite_only_when_its_shipped_weights_are_marked_default(tmp_path, monkeypatch):
    from refcolor import checkpoint

    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert checkpoint.resolve_default("default") == "warp"
    (tmp_path / "lite.safetensors").write_bytes(b"")  # unreadable: never the default
    assert checkpoint.resolve_default("default") == "warp"
    model = build_model(get_config("lite", pretrained=False, memory_grid=(2, 2)))
    save_model(model, tmp_path / "lite.safetensors")  # shipped, but not marked: offered, not default
    assert checkpoint.resolve_default("default") == "warp"
    save_model(model, tmp_path / "lite.safetensors", metadata={"default": "yes"})
    assert checkpoint.resolve_default("default") == "lite"
    assert checkpoint.resolve_default("warp") == "warp"


def test_packaged_lite_weights_load_offline_and_colorize():
    from refcolor import checkpoint

    path = checkpoint.WEIGHTS_DIR / "lite.safetensors"
    assert path.is_file() and path.stat().st_size <= 25 * 2**20
    cfg, tensors, meta = read_checkpoint(path)
    assert cfg.preset == "lite" and all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    # the default since session 13: exported with --as-default, which read a davis16-dev report
    # with every bar met (docs/MODEL.md)
    assert meta.get("default") == "yes" and checkpoint.resolve_default("default") == "lite"
    assert "davis16-dev" in meta.get("note", "")
    model = load_model("lite")
    g = torch.Generator().manual_seed(0)
    l = torch.rand(1, 3, 1, 64, 112, generator=g) * 2 - 1
    ref = torch.cat([l[:, 0], torch.rand(1, 2, 64, 112, generator=g) - 0.5], 1)
    with torch.inference_mode():
        ab, memory = model.step(l, model.encode_reference(ref), None)
    assert ab.shape == (1, 3, 2, 64, 112) and torch.isfinite(ab).all() and memory is not None
    assert ab.abs().max() > 1e-3  # trained colors, not gray
