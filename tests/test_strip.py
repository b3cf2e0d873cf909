"""tools/strip.py: the docs' frame strip; bad input is one line and a non-zero exit, nothing written."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import strip  # noqa: E402


def frames(folder: Path, n: int, color: tuple[int, int, int]) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((36, 64, 3), color, np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def test_strip_writes_references_and_pairs(tmp_path):
    gray, color = frames(tmp_path / "in", 3, (90, 90, 90)), frames(tmp_path / "out", 3, (200, 40, 40))
    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((48, 32, 3), (10, 200, 10), np.uint8)).save(ref)
    out = tmp_path / "strip.png"
    assert strip.main(["--input", str(gray), "--output", str(color), "--refs", str(ref), "--frames", "0", "2",
                       "--width", "64", "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[1] == 128 and (sheet == (200, 40, 40)).all(-1).any() and (sheet == (10, 200, 10)).all(-1).any()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_strip_bad_input_is_one_line(tmp_path, capsys):
    gray, color = frames(tmp_path / "in", 2, (90, 90, 90)), frames(tmp_path / "out", 2, (200, 40, 40))
    out = tmp_path / "strip.png"
    assert strip.main(["--input", str(gray), "--output", str(color), "--frames", "5", "--out", str(out)]) == 1
    assert strip.main(["--input", str(gray), "--output", str(color), "--refs", str(tmp_path / "nope.jpg"),
                       "--frames", "0", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no frame 5" in err[0] and "nope.jpg" in err[1] and not out.exists()
