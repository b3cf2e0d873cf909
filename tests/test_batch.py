"""Batch: a folder or list of videos, finished ones skipped, ranks splitting the list."""
import numpy as np
import pytest
from PIL import Image

from refcolor.batch import colorize_batch, list_videos
from refcolor.cli import main
from refcolor.errors import RefcolorError


@pytest.fixture
def archive(tmp_path):
    from conftest import make_video

    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(3):
        make_video(folder / f"reel{i}.mp4", n=4, width=64, height=48, seed=i)
    (folder / "notes.txt").write_text("not a video")
    ref = tmp_path / "ref.png"
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (200, 40, 40)
    rgb[:, 32:] = (40, 60, 200)
    Image.fromarray(rgb).save(ref)
    return folder, ref


def test_folder_batch_skips_finished_and_reports(archive, tmp_path, capsys):
    folder, ref = archive
    out = tmp_path / "out"
    assert main(["colorize", str(folder), "-r", str(ref), "-o", str(out), "--size", "48x64", "-q", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["reel0.mp4", "reel1.mp4", "reel2.mp4"]
    assert "3 colorized" in capsys.readouterr().out
    assert main(["colorize", str(folder), "-r", str(ref), "-o", str(out), "--size", "48x64", "-q", "--device", "cpu"]) == 0
    assert "3 already done" in capsys.readouterr().out


def test_ranks_split_the_list(archive, tmp_path, monkeypatch):
    folder, ref = archive
    listing = tmp_path / "videos.txt"
    listing.write_text("# my reels\narchive/reel0.mp4\narchive/reel1.mp4\narchive/reel2.mp4\n")
    assert [p.name for p in list_videos(listing)] == ["reel0.mp4", "reel1.mp4", "reel2.mp4"]
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        report = colorize_batch(listing, ref, tmp_path / "out", size=(48, 64), progress=False, device="cpu")
        seen.append(sorted(p.name for p in report["done"]))
    assert seen == [["reel0.mp4", "reel2.mp4"], ["reel1.mp4"]]


def test_bad_video_in_a_batch_fails_alone(archive, tmp_path, capsys):
    folder, ref = archive
    (folder / "broken.mp4").write_bytes(b"\x00" * 500)
    out = tmp_path / "out"
    code = main(["colorize", str(folder), "-r", str(ref), "-o", str(out), "--size", "48x64", "-q", "--device", "cpu"])
    assert code == 2
    assert len(list(out.glob("reel*.mp4"))) == 3
    assert "1 video(s) failed: broken.mp4" in capsys.readouterr().err


def test_empty_list_is_an_error(tmp_path):
    listing = tmp_path / "none.txt"
    listing.write_text("# nothing\n")
    with pytest.raises(RefcolorError, match="no videos"):
        colorize_batch(listing, "ref.png", tmp_path / "o")
