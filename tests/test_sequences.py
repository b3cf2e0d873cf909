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


def test_walk_names_by_relative_path_and_skips_hidden(tmp_path):
    _frames(tmp_path / "b" / "clip")
    _frames(tmp_path / ".hidden")
    (tmp_path / "b" / "x.mp4").write_bytes(b"")
    (tmp_path / "b" / ".y.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    seen = []
    sequences.walk(tmp_path, lambda folder, files, name: seen.append(("frames", name, len(files))),
                   lambda path, name: seen.append(("video", name, path.name)))
    assert seen == [("video", "b/x.mp4", "x.mp4"), ("frames", "b/clip", 2)]


def test_walk_reads_davis_frames_only(tmp_path):
    _frames(tmp_path / "JPEGImages" / "480p" / "bear")
    _frames(tmp_path / "Annotations" / "480p" / "bear")
    seen = []
    sequences.walk(tmp_path, lambda folder, files, name: seen.append(name), lambda path, name: seen.append(name))
    assert seen == ["bear"]


def test_discover_sequences_one_level(tmp_path):
    _frames(tmp_path / "seq10")
    _frames(tmp_path / "seq2")
    (tmp_path / "clip.mp4").write_bytes(b"")
    found = sequences.discover_sequences(tmp_path)
    assert [(s.name, s.kind) for s in found] == [("clip", "video"), ("seq2", "frames"), ("seq10", "frames")]
    assert sequences.discover_sequences(tmp_path / "seq2")[0].name == "seq2"  # the root itself
    (tmp_path / "empty").mkdir()
    with pytest.raises(RefcolorError, match="no sequences found"):
        sequences.discover_sequences(tmp_path / "empty")
