"""Shots: cut detection on real footage with known cuts, reference schedules, per-shot references."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refcolor.cli import main
from refcolor.errors import RefcolorError
from refcolor.shots import build_schedule, detect_shots, parse_reference_spec
from refcolor.video import open_source

# Three shots of bikes.mp4 (its own cuts are at frames 30, 76, 137, 187, 242), LEN frames each.
SHOT_STARTS = (0, 90, 150)  # inside shots 0, 2 and 3
LEN = 16  # at least the detector's minimum shot length (15 frames)


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory):
    from refcolor.demo import bikes_path

    try:
        src = bikes_path()
    except RefcolorError as err:
        pytest.skip(str(err))
    wanted = {s + k for s in SHOT_STARTS for k in range(LEN)}
    with open_source(src) as source:
        frames = {f.index: f.rgb for f in source if f.index in wanted}
    root = tmp_path_factory.mktemp("shots")
    folder, refs = root / "gray", []
    folder.mkdir()
    for i, idx in enumerate(sorted(wanted)):
        gray = frames[idx].mean(-1).astype(np.uint8)
        Image.fromarray(gray).save(folder / f"{i:04d}.png")
    for s in SHOT_STARTS:
        path = root / f"ref{s}.png"
        Image.fromarray(frames[s + LEN // 2]).save(path)
        refs.append(path)
    return folder, refs


def test_detects_the_known_cuts(three_shots):
    folder, _ = three_shots
    shots = detect_shots(folder, min_frames=4)
    assert [s.start for s in shots] == [0, LEN, 2 * LEN]
    assert shots[-1].end == 3 * LEN


def test_shots_command_writes_a_contact_sheet(three_shots, tmp_path, capsys):
    folder, _ = three_shots
    sheet = tmp_path / "sheet.png"
    assert main(["shots", str(folder), "--sheet", str(sheet), "-q", "--threshold", "27"]) == 0
    out = capsys.readouterr().out
    assert "shot   0" in out and sheet.is_file()


def test_shots_command_leaves_the_input_folder_unchanged(three_shots, tmp_path, capsys, monkeypatch):
    """The contact sheet goes to the current folder, never beside or into the input (it used to be
    written into the input's data folder)."""
    folder, _ = three_shots
    data = folder.parent

    def snapshot():
        return sorted((str(p.relative_to(data)), p.stat().st_mtime_ns) for p in data.rglob("*"))

    before = snapshot()
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["shots", str(folder), "-q"]) == 0
    assert f"contact sheet: {elsewhere / 'gray_shots.png'}" in capsys.readouterr().out
    assert (elsewhere / "gray_shots.png").is_file() and snapshot() == before
    # asked to write there (the current folder is the data folder, or --sheet points into it): refused at once
    monkeypatch.chdir(data)
    assert main(["shots", str(folder), "-q"]) == 2
    assert main(["shots", str(folder), "-q", "--sheet", str(folder / "sheet.png")]) == 2
    assert "into the input's folder" in capsys.readouterr().err and snapshot() == before


def test_auto_shots_pick_each_shots_own_reference(three_shots, tmp_path):
    """With --shots auto and the three references in shuffled order, every shot's frames equal
    those of a run on that shot alone with its own reference (memory reset at each cut)."""
    import shutil

    import refcolor

    folder, refs = three_shots
    out = tmp_path / "out"
    refcolor.colorize(folder, [str(r) for r in reversed(refs)], out, size=(64, 152), shots="auto", progress=False, device="cpu")
    frames = [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]
    pngs = sorted(folder.glob("*.png"))
    for k in range(3):
        alone = tmp_path / f"shot{k}"
        alone.mkdir()
        for p in pngs[k * LEN : (k + 1) * LEN]:
            shutil.copy(p, alone / p.name)
        res = refcolor.colorize(alone, refs[k], tmp_path / f"out{k}", size=(64, 152), progress=False, device="cpu")
        expected = [np.asarray(Image.open(p)) for p in sorted(res.output.glob("*.png"))]
        got = frames[k * LEN : (k + 1) * LEN]
        assert max(np.abs(a.astype(int) - b).max() for a, b in zip(got, expected)) <= 1, f"shot {k}"


def test_auto_shots_says_what_it_found(three_shots, tmp_path, capsys):
    """--shots auto prints each shot and the reference chosen for it (unless --quiet)."""
    folder, refs = three_shots
    common = ["--shots", "auto", "--size", "32x72", "--device", "cpu", "--model", "warp"]
    assert main(["colorize", str(folder), *sum([["-r", str(r)] for r in reversed(refs)], []), "-o", str(tmp_path / "a"), *common]) == 0
    err = capsys.readouterr().err
    for k, start in enumerate(SHOT_STARTS):
        assert f"shot {k}: frames {k * LEN}-{(k + 1) * LEN - 1} from 00:00:0" in err
        assert [line for line in err.splitlines() if line.startswith(f"shot {k}:")][0].endswith(f"reference {refs[k].name}")
    assert main(["colorize", str(folder), "-r", str(refs[0]), "-o", str(tmp_path / "b"), *common, "-q"]) == 0
    assert "shot 0:" not in capsys.readouterr().err


def test_parse_reference_spec(tmp_path):
    assert parse_reference_spec("a.jpg") == (None, "a.jpg")
    assert parse_reference_spec("0:a.jpg") == (0, "a.jpg")
    assert parse_reference_spec("120:dir/b.png") == (120, "dir/b.png")
    assert parse_reference_spec("00:01:12.5:b.jpg") == (72.5, "b.jpg")
    assert parse_reference_spec("01:30:c.jpg") == (90.0, "c.jpg")
    odd = tmp_path / "12:odd.png"
    odd.write_bytes(b"")
    assert parse_reference_spec(str(odd)) == (None, str(odd))  # an existing file wins
    with pytest.raises(RefcolorError, match="cannot read reference"):
        parse_reference_spec("x:y:z.png")


def test_build_schedule():
    plain = build_schedule([None, None], fps=None)
    assert plain.starts == [0] and plain.sets == [[0, 1]] and not plain.boundaries()
    timed = build_schedule([0, 2.0, None], fps=25)  # a from 0, b from 2 s, c everywhere
    assert timed.starts == [0, 50] and timed.at(10) == [0, 2] and timed.at(60) == [1, 2]
    late = build_schedule([30], fps=25)  # before its start the only reference still applies
    assert late.starts == [0, 30] and late.at(0) == [0]
