"""``refcolor evaluate --components``: one checkpoint with each part switched off, and CDC in the report."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from refcolor.checkpoint import save_model
from refcolor.cli import main
from refcolor.config import get_config
from refcolor.eval.components import summarize
from refcolor.models.network import build_model


def write_clip(folder: Path, frames: int = 5, size: tuple[int, int] = (32, 48)) -> None:
    """Colored stripes drifting right one pixel per frame."""
    folder.mkdir(parents=True)
    h, w = size
    palette = np.array([[200, 40, 40], [40, 160, 60], [50, 70, 210], [220, 200, 40]], np.uint8)
    for t in range(frames):
        x = (np.arange(w) + t) // 5 % len(palette)  # 48 is not a whole number of periods
        img = np.repeat(palette[x][None], h, axis=0)
        img[: h // 2] = img[: h // 2] // 2 + 60
        cv2.imwrite(str(folder / f"{t:05d}.png"), img[..., ::-1])


def checkpoint(path: Path, **flags) -> Path:
    torch.manual_seed(0)
    return save_model(build_model(get_config("lite", pretrained=False, **{"double_head": True, "num_ct_blocks": 2, **flags})), path)


@pytest.fixture(scope="module")
def components_report(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("components")
    write_clip(root / "data" / "stripes")
    full = checkpoint(root / "tiny.safetensors")
    single = checkpoint(root / "onehead.safetensors", double_head=False)
    old = torch.get_num_threads()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = main(["evaluate", "--data", str(root / "data"), "--out", str(root / "report"), "--model", str(full),
                     "--components", str(full), "--components", str(single), "--size", "32x48", "--threads", "1",
                     "--quiet"])
    torch.set_num_threads(old)
    return root / "report", code


def test_one_run_gives_every_row(components_report):
    out, code = components_report
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    groups = {g["model"]: g for g in report["components"]}
    assert [r["name"] for r in groups["tiny"]["rows"]] == [
        "tiny", "tiny -subnet (W1)", "tiny -memory", "tiny -head2", "tiny -transformer"]
    assert [r["switch"] for r in groups["tiny"]["rows"]] == [None, "no_subnet", "reset_memory", "no_head2", "no_transformer"]
    # the one-head model has no head 2 to switch off: left out, with the reason
    assert [r["name"] for r in groups["onehead"]["rows"]][-1] == "onehead -transformer"
    assert "one head" in groups["onehead"]["skipped"]["head2"]
    # --model tiny and --components tiny share the full row: no duplicate method
    names = [m["name"] for m in report["methods"]]
    assert names.count("tiny") == 1 and not any("#" in n for n in names)
    ablations = {m["name"]: m.get("ablation") for m in report["methods"]}
    assert ablations["tiny"] is None and ablations["tiny -memory"]["reset_memory"] is True


def test_deltas_are_against_the_full_model(components_report):
    report = json.loads((components_report[0] / "report.json").read_text())
    mean = report["mean"]
    rows = report["components"][0]["rows"]
    assert rows[0]["delta"] == {"PSNR": 0.0, "COLOR": 0.0, "WE": 0.0, "CDC": 0.0}
    for r in rows[1:]:
        for k in ("PSNR", "COLOR", "WE", "CDC"):
            assert r["mean"][k] == mean[r["name"]][k]
            assert r["delta"][k] == pytest.approx(mean[r["name"]][k] - mean["tiny"][k], abs=1e-12)
            if mean["tiny"][k]:
                assert r["relative"][k] == pytest.approx(r["delta"][k] / mean["tiny"][k], abs=1e-12)
            else:  # e.g. WE 0 on this tiny clip (no valid flow): no relative change, never a division by zero
                assert r["relative"][k] is None
        assert "earns_place" in r


def test_results_md_has_the_component_table_and_cdc(components_report):
    text = (components_report[0] / "results.md").read_text()
    assert "## Components of `tiny` (paper Table 2 on one checkpoint)" in text
    assert "| row | PSNR ↑ | ΔPSNR | COLOR ↑ | ΔCOLOR | WE ↓ | ΔWE | CDC ↓ | ΔCDC | earns its place |" in text
    assert "| tiny -subnet (W1) | " in text and "head2: left out (ablation no_head2" in text
    assert "| method | FID ↓ | LPIPS ↓ | PSNR ↑ | SSIM ↑ | COLOR ↑ | WE ↓ | CDC ↓ |" in text
    assert "## CDC per sequence" in text
    report = json.loads((components_report[0] / "report.json").read_text())
    assert report["mean"]["ground truth"]["CDC"] > 0  # the stripes drift: the histograms change a little
    assert "--components" in report["command"]


def test_earns_place_follows_the_issue_bar():
    class M:
        def __init__(self, name):
            self.name = name

    mean = {"f": {"PSNR": 30.0, "COLOR": 20.0, "WE": 1.0, "CDC": 0.004},
            "a": {"PSNR": 29.95, "COLOR": 19.9, "WE": 1.02, "CDC": 0.005},  # within every bar: no
            "b": {"PSNR": 29.85, "COLOR": 20.0, "WE": 1.0, "CDC": 0.004},  # -0.15 dB: yes
            "c": {"PSNR": 30.0, "COLOR": 20.0, "WE": 1.05, "CDC": 0.004},  # WE +5 %: yes
            "d": {"PSNR": 30.0, "COLOR": "n/a (x)", "WE": 1.0, "CDC": 0.004},  # not a number: no verdict
            "e": {"PSNR": 29.0, "COLOR": "n/a (x)", "WE": 1.0, "CDC": 0.004}}  # -1 dB is enough
    group = {"spec": "f", "full": M("f"), "skipped": {},
             "rows": [(M(n), "no_subnet", "") for n in ("a", "b", "c", "d", "e")]}
    rows = summarize([group], mean)[0]["rows"]
    assert [r.get("earns_place") for r in rows] == [None, False, True, True, None, True]


def test_components_of_warp_is_a_one_line_error(tmp_path, capsys):
    write_clip(tmp_path / "data" / "stripes", frames=2)
    assert main(["evaluate", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"), "--components", "warp"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not warp" in err
