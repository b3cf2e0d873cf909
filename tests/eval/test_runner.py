"""The evaluation runner, report and ``refcolor evaluate`` on a tiny dataset cut from DAVIS."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from refcolor.cli import main
from refcolor.config import get_config
from refcolor.errors import RefcolorError
from refcolor.eval.command import parse_blocks
from refcolor.eval.report import Footnotes, fmt
from refcolor.eval.runner import ablation_label, discover_sequences, mean_over_sequences
from refcolor.eval.metrics import Unavailable

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIS = DATA / "davis16-dev"
needs_data = pytest.mark.skipif(not DAVIS.is_dir(), reason=f"shared data not found at {DAVIS}")
METHODS = ("gray", "global transfer", "welsh", "warp", "ground truth")


def write_frames(folder: Path, seq: str, count: int, size: tuple[int, int] = (64, 112), start: int = 0,
                 gray: bool = False) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        img = cv2.imread(str(DAVIS / seq / f"{start + i:05d}.jpg"), cv2.IMREAD_COLOR)
        img = cv2.resize(img, size[::-1], interpolation=cv2.INTER_AREA)
        if gray:
            img = np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[Path, int, str]:
    """2 DAVIS sequences of 4 frames, a 1-frame one, a gray one and one with a frame of another size."""
    if not DAVIS.is_dir():
        pytest.skip(f"shared data not found at {DAVIS}")
    root = tmp_path_factory.mktemp("tiny")
    data, out = root / "data", root / "report"
    write_frames(data / "blackswan", "blackswan", 4)
    write_frames(data / "dog", "dog", 4, start=10)
    write_frames(data / "one-frame", "camel", 1)
    write_frames(data / "gray-truth", "cows", 2, gray=True)
    write_frames(data / "mixed-sizes", "goat", 3)
    cv2.imwrite(str(data / "mixed-sizes" / "00001.png"),
                cv2.resize(cv2.imread(str(DAVIS / "goat" / "00001.jpg")), (128, 72)))
    old = torch.get_num_threads()  # --threads 1 sets it for the process: restored below
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["evaluate", "--data", str(data), "--out", str(out), "--baselines", "--size", "64x112",
                     "--blocks", "1,2", "--speed-frames", "2", "--threads", "1", "--quiet"])
    torch.set_num_threads(old)
    return out, code, err.getvalue()


@needs_data
def test_command_succeeds_and_writes_every_file(tiny_report):
    out, code, _ = tiny_report
    assert code == 0
    for rel in ("report.json", "results.csv", "results.md", "bars.png", "psnr_over_time.png",
                "grids/blackswan.png", "grids/dog.png", "psnr_time/blackswan.png"):
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    assert not list(out.glob(".report-*")), "staging folder left behind"
    assert not (out / "grids" / "mixed-sizes.png").exists()
    grid = cv2.imread(str(out / "grids" / "blackswan.png"))
    assert grid.shape[0] > 3 * 64 and grid.shape[1] > 7 * 112  # 3 frames x (gray, ref, 4 methods, truth)


@needs_data
def test_results_md_has_methods_as_rows(tiny_report):
    text = (tiny_report[0] / "results.md").read_text()
    for name in METHODS:
        assert f"| {name} |" in text, name
    assert "| method | FID ↓ | LPIPS ↓ | PSNR ↑ | SSIM ↑ | COLOR ↑ | WE ↓ | CDC ↓ |" in text
    assert "## Speed (paper Table 3)" in text
    if "n/a [" in text:  # e.g. LPIPS / FID weights absent: the reasons are footnotes, never numbers
        assert "## Not available" in text and "[1] " in text


@needs_data
def test_robustness_messages(tiny_report):
    out, _, stderr = tiny_report
    report = json.loads((out / "report.json").read_text())
    seqs = report["sequences"]
    assert "same size" in seqs["mixed-sizes"]["skipped"]
    assert "sequence mixed-sizes skipped" in stderr
    one = seqs["one-frame"]["methods"]
    assert one["warp"]["metrics"]["WE"] == "n/a (1 frame)" and one["warp"]["metrics"]["CDC"] == "n/a (1 frame)"
    assert isinstance(one["warp"]["metrics"]["PSNR"], float)
    assert "has 1 frame: WE n/a (1 frame)" in stderr
    assert "colorfulness ~0" in stderr
    assert seqs["gray-truth"]["methods"]["warp"]["metrics"]["PSNR"].startswith("n/a (")  # gray reference
    assert isinstance(seqs["gray-truth"]["methods"]["gray"]["metrics"]["PSNR"], float)
    assert all(line.startswith("refcolor: warning: ") for line in stderr.strip().splitlines())


@needs_data
def test_report_numbers_are_consistent(tiny_report):
    report = json.loads((tiny_report[0] / "report.json").read_text())
    seqs = {k: v for k, v in report["sequences"].items() if "skipped" not in v}
    assert set(seqs) == {"blackswan", "dog", "one-frame", "gray-truth"}
    mean = report["mean"]
    assert mean["gray"]["PSNR"] == pytest.approx(np.mean([s["methods"]["gray"]["metrics"]["PSNR"] for s in seqs.values()]))
    assert mean["warp"]["sequences"] == 3  # the gray-reference sequence has no warp result
    assert mean["gray"]["COLOR"] < 0.5
    assert mean["global transfer"]["COLOR"] > 2.0 and mean["welsh"]["COLOR"] > 2.0
    for seq in ("blackswan", "dog"):
        m = seqs[seq]["methods"]
        assert m["warp"]["metrics"]["PSNR"] > m["gray"]["metrics"]["PSNR"]
    assert mean["ground truth"]["PSNR"] is None and mean["ground truth"]["COLOR"] > 5.0
    assert isinstance(mean["warp"]["WE"], float) and mean["warp"]["CDC"] > 0 and mean["ground truth"]["CDC"] > 0
    assert [(r["method"], r["N"]) for r in report["speed"]["rows"]] == [("warp", 1), ("warp", 2)]
    assert report["device"].startswith(("CPU: ", "GPU: ")) and report["flow"]
    assert report["command"].startswith("refcolor evaluate --data ")
    assert len(seqs["blackswan"]["methods"]["warp"]["psnr"]) == 4
    csv = (tiny_report[0] / "results.csv").read_text().splitlines()
    assert csv[0].startswith("sequence,method,frames,FID,LPIPS,PSNR,SSIM,COLOR,WE,CDC")
    assert any(line.startswith("mean,warp,") for line in csv)


def test_empty_data_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["evaluate", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--baselines", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("refcolor: error: no sequences found")


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), "--baselines"]) == 2
    assert "data folder not found" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--blocks", "1,x"]) == 2
    assert "malformed --blocks" in capsys.readouterr().err
    assert parse_blocks("3,1,3") == [3, 1] and parse_blocks("") == []


def test_nothing_to_evaluate(tmp_path, capsys):
    folder = tmp_path / "seq"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((16, 16, 3), 128, np.uint8))
    assert main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_discovery_layouts(tmp_path, small_video):
    # a folder of color videos (small_video lives in tmp_path)
    found = discover_sequences(tmp_path)
    assert [(s.name, s.kind) for s in found] == [("small", "video")]
    # DAVIS layout
    davis = tmp_path / "davis"
    for seq in ("b-seq", "a-seq"):
        (davis / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        cv2.imwrite(str(davis / "JPEGImages" / "480p" / seq / "00000.jpg"), np.zeros((16, 16, 3), np.uint8))
    assert [s.name for s in discover_sequences(davis)] == ["a-seq", "b-seq"]
    # a single folder of frames
    assert [s.name for s in discover_sequences(davis / "JPEGImages" / "480p" / "a-seq")] == ["a-seq"]
    with pytest.raises(RefcolorError, match="not found"):
        discover_sequences(tmp_path / "missing")


def test_ablation_labels_from_checkpoint_config(tmp_path):
    from safetensors.torch import save_file

    def ckpt(name: str, **flags) -> Path:
        path = tmp_path / f"{name}.safetensors"
        cfg = get_config("lite", pretrained=False, **{"double_head": True, **flags})
        save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "refcolor-1", "config": cfg.to_json()})
        return path

    assert ablation_label(ckpt("full"))[0] == "full: full"
    label, flags = ablation_label(ckpt("nolink", use_linkage=False))
    assert label == "nolink: w/o Linkage" and flags == {"use_transformer": True, "use_linkage": False, "double_head": True}
    assert ablation_label(ckpt("bare", use_transformer=False, use_linkage=False))[0] == "bare: w/o Transformer & Linkage"
    assert ablation_label(ckpt("single", double_head=False))[0] == "single: w/o Double-head"


def test_means_and_cells():
    na = Unavailable("weights not found: x")
    assert mean_over_sequences([1.0, 3.0, na]) == 2.0
    assert mean_over_sequences([na, na]) == na
    assert mean_over_sequences([None, None]) is None
    notes = Footnotes()
    assert fmt(str(na), 2, notes) == "n/a [1]" and notes.reasons == ["weights not found: x"]
    assert fmt(None) == "–" and fmt(1.23456, 3) == "1.235"


def test_pick_reference(tmp_path):
    from refcolor.eval.runner import Sequence, pick_reference

    frames = [np.full((16, 24, 3), i, np.uint8) for i in range(5)]
    seq = Sequence("clip", "frames", tmp_path)
    assert pick_reference("first", seq, frames, (16, 24))[0][0, 0, 0] == 0
    ref, desc = pick_reference("middle", seq, frames, (16, 24))
    assert ref[0, 0, 0] == 2 and desc == "frame 2"
    image = np.zeros((32, 48, 3), np.uint8)
    image[..., 2] = 200
    cv2.imwrite(str(tmp_path / "clip.png"), image)
    ref, _ = pick_reference(str(tmp_path / "clip.png"), seq, frames, (16, 24))
    assert ref.shape == (16, 24, 3) and ref[0, 0, 0] == 200  # resized to the working size, RGB order
    assert pick_reference(str(tmp_path), seq, frames, (16, 24))[1].endswith("clip.png")  # folder of <seq>.<ext>
    with pytest.raises(RefcolorError, match="no reference image other"):
        pick_reference(str(tmp_path), Sequence("other", "frames", tmp_path), frames, (16, 24))
