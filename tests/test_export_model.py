"""tools/export_model.py: the fp16 export, and the default mark only for a model that meets the bars."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from refcolor.checkpoint import load_model, save_model
from refcolor.config import get_config
from refcolor.models.network import build_model

_spec = importlib.util.spec_from_file_location("export_model", Path(__file__).parents[1] / "tools" / "export_model.py")
export_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_model)


def test_export_marks_the_default_only_when_asked(tmp_path, monkeypatch):
    from refcolor import checkpoint

    src = tmp_path / "trained.safetensors"
    save_model(build_model(get_config("lite", pretrained=False, memory_grid=(2, 2))), src)
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path / "weights")
    diff = export_model.export(src, tmp_path / "weights" / "lite.safetensors")
    assert diff < 1e-2  # fp16 round trip keeps the colors (normalised ab)
    assert checkpoint.resolve_default("default") == "warp"
    assert load_model("lite").cfg.preset == "lite"  # offered by name all the same
    export_model.export(src, tmp_path / "weights" / "lite.safetensors", as_default=True)
    assert checkpoint.resolve_default("default") == "lite"



def report(psnr: float, we: float, color: float, data: str = "/x/davis16-dev") -> dict:
    """A report.json as refcolor evaluate writes it (only what the bars read)."""
    mean = {"warp": {"PSNR": 30.91, "WE": 1.071, "COLOR": 27.78}, "global transfer": {"PSNR": 26.92, "WE": 0.79, "COLOR": 8.9},
            "ground truth": {"PSNR": None, "WE": 0.864, "COLOR": 31.90}, "cand": {"PSNR": psnr, "WE": we, "COLOR": color}}
    return {"config": {"data": data, "baselines": True, "sequences": None, "max_frames": None},
            "methods": [{"name": "warp", "kind": "model"}, {"name": "cand", "kind": "model"}], "mean": mean}


def test_default_bars_pass_only_when_every_bar_is_met():
    assert export_model.default_bars(report(32.0, 0.95, 29.0)) == []
    assert len(export_model.default_bars(report(31.28, 0.950, 26.75))) == 2  # the first shipped lite: PSNR and COLOR missed
    assert export_model.default_bars(report(31.75, 0.96, 28.71)) == []  # the Quality issue's bars, at their edges
    missed = export_model.default_bars(report(31.80, 0.835, 28.05))  # candidate-s8: only COLOR
    assert len(missed) == 1 and "COLOR" in missed[0]
    assert "PSNR" in export_model.default_bars(report(31.74, 0.9, 29.0))[0]
    assert "WE" in export_model.default_bars(report(32.0, 1.0, 29.0))[0]
    assert "not a full davis16-dev run" in export_model.default_bars(report(32.0, 0.95, 29.0, data="/x/train"))[0]


def test_as_default_is_refused_without_a_passing_report(tmp_path, capsys):
    src = tmp_path / "trained.safetensors"
    save_model(build_model(get_config("lite", pretrained=False, memory_grid=(2, 2))), src)
    out = tmp_path / "lite.safetensors"
    assert export_model.main([str(src), "--out", str(out), "--as-default"]) == 2
    (tmp_path / "report.json").write_text(json.dumps(report(31.28, 0.950, 26.75)))
    assert export_model.main([str(src), "--out", str(out), "--as-default", "--report", str(tmp_path / "report.json")]) == 2
    assert "not the default" in capsys.readouterr().err and not out.exists()
