"""train/sources.py: training decodes videos as ``refcolor colorize`` does (issue 17 item 3)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_video
from refcolor.train.sources import discover
from refcolor.video import open_source


@pytest.mark.parametrize("ccw", [90, 180])
def test_training_reads_a_rotated_phone_video_upright_like_colorize(tmp_path, ccw):
    path = make_video(tmp_path / "phone.mp4", n=6, width=64, height=48, rotation=ccw)
    with open_source(path) as source:
        expect = [f.rgb for f in source]  # what colorize decodes: upright
    h, w = expect[0].shape[:2]
    assert (h, w) == ((64, 48) if ccw == 90 else (48, 64))
    seq = discover([str(path)]).sequences[0]
    assert seq.kind == "video" and seq.num_frames == len(expect)
    every = list(range(len(expect)))
    # (h, w) is the frames' own size, so the canonical frame is the decoded frame itself
    for cache in (None, tmp_path / "frames"):  # the seeking path and the decode-once cache
        got = seq.read(every, (h, w), cache)
        for i in every:
            assert got[i].shape == expect[i].shape
            assert np.array_equal(got[i], expect[i]), f"frame {i} (cache {cache})"
    assert seq.read([4, 2], (h, w), None)[4].tobytes() == expect[4].tobytes()  # a seek into the middle
