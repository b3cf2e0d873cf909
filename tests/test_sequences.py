"""refcolor.sequences: the one Sequence record and the discovery shared by training and evaluation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refcolor import sequences
from refcolor.errors import RefcolorError


def _frames(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")


def test_training_and_evaluation_share_one_sequence_record():
    from refcolor.eval import runner
    from refcolor.train import sources

    assert runner.Sequence is sequences.Sequence and runner.discover_sequences is sequences.discover_sequences
    assert issubclass(sources.Sequence, sequences.Sequence)
    seq = sources.Sequence("a", "video", Path("a.mp4"), 12, fps=25.0)
    assert (seq.name, seq.kind, seq.path, seq.num_frames, seq.fps, seq.cache_dir, seq.bad) == \
        ("a", "video", Path("a.mp4"), 12, 25.0, None, False)


def test_tree_layout_names_by_relative_path_and_skips_hidden(tmp_path):
    _frames(tmp_path / "b" / "clip")
    _frames(tmp_path / ".hidden")
    (tmp_path / "b" / "x.mp4").write_bytes(b"")
    (tmp_path / "b" / ".y.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    found = sequences.discover_sequences(tmp_path, layout="tree")
    assert [(s.kind, s.name, s.path.name, len(s.files)) for s in found] == [
        ("video", "b/x.mp4", "x.mp4", 0), ("frames", "b/clip", "clip", 2)]


def test_one_davis_rule_for_both_layouts(tmp_path):
    _frames(tmp_path / "JPEGImages" / "480p" / "bear")
    _frames(tmp_path / "Annotations" / "480p" / "bear")
    for layout in ("tree", "children"):
        assert [s.name for s in sequences.discover_sequences(tmp_path, layout=layout)] == ["bear"]
    # without 480p the frames are under JPEGImages (evaluation found nothing here before it shared the rule)
    _frames(tmp_path / "full" / "JPEGImages" / "fox")
    _frames(tmp_path / "full" / "Annotations" / "fox")
    for layout in ("tree", "children"):
        assert [s.name for s in sequences.discover_sequences(tmp_path / "full", layout=layout)] == ["fox"]


def test_discover_sequences_one_level(tmp_path):
    _frames(tmp_path / "seq10")
    _frames(tmp_path / "seq2")
    (tmp_path / "clip.mp4").write_bytes(b"")
    found = sequences.discover_sequences(tmp_path)
    assert [(s.name, s.kind, s.num_frames) for s in found] == [("clip", "video", 0), ("seq2", "frames", 2),
                                                               ("seq10", "frames", 2)]
    assert sequences.discover_sequences(tmp_path / "seq2")[0].name == "seq2"  # the root itself
    (tmp_path / "empty").mkdir()
    assert sequences.discover_sequences(tmp_path / "empty") == []  # the caller says what it expected
    with pytest.raises(RefcolorError, match="data folder not found"):
        sequences.discover_sequences(tmp_path / "missing", layout="tree")
    with pytest.raises(ValueError, match="layout"):
        sequences.discover_sequences(tmp_path, layout="flat")


def test_an_unreadable_folder_is_a_one_line_error(tmp_path, monkeypatch):
    _frames(tmp_path / "seq")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    for layout in ("children", "tree", "stills"):
        with pytest.raises(RefcolorError, match="cannot read data folder"):
            sequences.discover_sequences(tmp_path, layout=layout)


def test_stills_layout_and_record_class(tmp_path):
    from refcolor.train.sources import Sequence as TrainSequence

    for name in ("b10.png", "b2.png", ".h.png", "note.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    found = sequences.discover_sequences(tmp_path, layout="stills", record=TrainSequence)
    assert [(s.name, s.kind, s.num_frames, type(s)) for s in found] == [
        ("still:b10", "still", 1, TrainSequence), ("still:b2", "still", 1, TrainSequence)]


def _tree(root: Path) -> Path:
    """Every rule of both discoveries in one small tree: natural vs plain order, nested folders,
    videos beside frames, a short folder, hidden entries, a non-media file."""
    from conftest import make_video

    for name, n in (("a10", 2), ("a2", 1), ("b", 3), ("b/inner", 2), (".hidden", 2)):
        _frames(root / name, n)
    for name, n in (("clip10.mp4", 5), ("clip2.mp4", 4), ("b/x.mp4", 3)):
        make_video(root / name, n=n, width=32, height=16)
    (root / "b" / ".y.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("")
    return root


def test_both_callers_find_the_same_sequences_as_before_one_discovery(tmp_path):
    """Pins what evaluation and training find (sets, order, names, counts, hold-out), recorded on
    the two walkers before they became one function."""
    from refcolor.eval.runner import discover_sequences
    from refcolor.train.sources import discover

    root = _tree(tmp_path / "data")
    assert [(s.name, s.kind, s.path.relative_to(root).as_posix()) for s in discover_sequences(root)] == [
        ("a2", "frames", "a2"), ("a10", "frames", "a10"), ("b", "frames", "b"),
        ("clip2", "video", "clip2.mp4"), ("clip10", "video", "clip10.mp4")]
    d = discover([str(root)], min_frames=2, holdout=(1, 3, 4))
    assert [(s.name, s.kind, s.num_frames, len(s.files)) for s in d.sequences] == [
        ("clip10.mp4", "video", 5, 0), ("a10", "frames", 2, 2), ("b", "frames", 3, 3),
        ("b/x.mp4", "video", 3, 0), ("b/inner", "frames", 2, 2)]
    assert [s.name for s in d.held_out] == ["clip2.mp4"] and d.too_short == [str(root / "a2")]
    assert d.sequences[2].files == [root / "b" / f"{i}.png" for i in range(3)]

    # frames in the root itself: evaluation takes the root only when nothing is under it
    _frames(tmp_path / "solo")
    _frames(tmp_path / "solo" / "sub")
    assert [s.name for s in discover_sequences(tmp_path / "solo")] == ["sub"]
    assert [s.name for s in discover([str(tmp_path / "solo")]).sequences] == ["solo", "sub"]

    # DAVIS: frames under JPEGImages/480p (training also JPEGImages alone), never the masks
    davis = tmp_path / "davis"
    for seq in ("bear", "b10", "b2"):
        _frames(davis / "JPEGImages" / "480p" / seq)
        _frames(davis / "Annotations" / "480p" / seq)
    assert [s.name for s in discover_sequences(davis)] == ["b2", "b10", "bear"]
    assert [s.name for s in discover([str(davis)]).sequences] == ["b10", "b2", "bear"]
    _frames(tmp_path / "davis-full" / "JPEGImages" / "bear")
    assert [s.name for s in discover([str(tmp_path / "davis-full")]).sequences] == ["bear"]

    # stills: the images of a folder, plain order, hidden and non-image files skipped
    stills = tmp_path / "photos"
    stills.mkdir()
    for i, name in enumerate(("p10.png", "p2.jpg", ".h.png", "note.txt")):
        Image.fromarray(np.dstack([np.full((16, 16), 200, np.uint8), np.full((16, 16), 30 + i, np.uint8),
                                   np.full((16, 16), 60, np.uint8)])).save(stills / name, format="PNG")
    d = discover([f"stills:{stills}", str(root)])
    assert [(s.name, s.kind) for s in d.sequences[:2]] == [("still:p10", "still"), ("still:p2", "still")]
