"""Writers (refcolor.video_write): video files (round trip, odd sizes, timestamps, colours, audio,
timeline) and frame folders, atomic writes and bad targets. Sources: tests/test_video.py."""
from __future__ import annotations

import itertools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from conftest import make_video  # noqa: E402
from refcolor.errors import RefcolorError  # noqa: E402
from refcolor.video import open_source  # noqa: E402
from refcolor.video_write import FrameFolderWriter, VideoWriter, open_writer  # noqa: E402


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


def _audio_seconds(path: Path) -> list[float]:
    """Decoded duration of every audio stream of ``path``."""
    with av.open(str(path)) as c:
        indexes = [s.index for s in c.streams.audio]
    out = []
    for i in indexes:
        with av.open(str(path)) as c:
            s = c.streams[i]
            out.append(sum(f.samples for f in c.decode(s)) / s.codec_context.sample_rate)
    return out


def _stream_codecs(path: Path) -> list[tuple[str, str]]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name) for s in c.streams]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- writers


@pytest.mark.parametrize("size", [(64, 48), (63, 37)])
def test_round_trip_mp4(tmp_path, size):
    w, h = size
    src_path = make_video(tmp_path / "in.mp4", n=12, width=w + w % 2, height=h + h % 2, fps=Fraction(30000, 1001))
    src = open_source(src_path)
    frames = [f.rgb[:h, :w].copy() for f in src]
    pts = [f.pts for f in open_source(src_path)]
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps=src.info.fps, width=w, height=h, time_base=src.info.time_base) as wr:
        for rgb, p in zip(frames, pts):
            wr.write(rgb, p)
    back = open_source(out)
    assert (back.info.width, back.info.height) == (w, h)
    assert back.info.fps == Fraction(30000, 1001)
    got = list(back)
    assert len(got) == back.info.num_frames == 12
    assert [float(f.pts * back.info.time_base) for f in got] == pytest.approx(
        [float(p * src.info.time_base) for p in pts], abs=1e-4)
    err = [np.abs(a.rgb.astype(int) - b.astype(int)).mean() for a, b in zip(got, frames)]
    assert max(err) < 4.0


def test_odd_size_pad_option(tmp_path):
    out = tmp_path / "pad.mp4"
    img = np.full((37, 63, 3), 90, np.uint8)
    with VideoWriter(out, fps=25, width=63, height=37, odd_size="pad") as wr:
        for _ in range(4):
            wr.write(img)
    src = open_source(out)
    assert (src.info.width, src.info.height) == (64, 38)
    assert sum(1 for _ in src) == 4


def test_variable_frame_rate_timestamps_survive(tmp_path):
    tb = Fraction(1, 1000)
    pts = [0, 40, 80, 200, 240, 500, 540]
    out = tmp_path / "vfr.mkv"
    with VideoWriter(out, fps=25, width=32, height=32, time_base=tb) as wr:
        for p in pts:
            wr.write(np.full((32, 32, 3), 128, np.uint8), p)
    got = [f.pts * open_source(out).info.time_base for f in open_source(out)]
    assert [float(t) for t in got] == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_constant_fps_without_pts(tmp_path):
    out = tmp_path / "cfr.mov"
    with VideoWriter(out, fps=None, width=32, height=24) as wr:
        for _ in range(10):
            wr.write(np.zeros((24, 32, 3), np.uint8))
    info = open_source(out).info
    assert info.fps == 25 and info.num_frames == 10


def test_colours_survive_limited_and_full_range(tmp_path):
    img = np.zeros((32, 96, 3), np.uint8)
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (30, 200, 90), (250, 240, 10), (128, 128, 128)]):
        img[:, i * 16:(i + 1) * 16] = c
    out = tmp_path / "col.mp4"
    with VideoWriter(out, fps=25, width=96, height=32, crf=0) as wr:
        wr.write(img)
    (back,) = list(open_source(out))
    assert np.abs(back.rgb[8:24].astype(int) - img[8:24]).max() <= 4
    full = tmp_path / "full.mp4"  # a full-range (JPEG) stream must decode with its own range
    with av.open(str(full), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 96, 32, "yuv444p", {"crf": "0"}
        s.codec_context.color_range, s.codec_context.colorspace = 2, 1
        f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(
            format="yuv444p", dst_colorspace="ITU709", dst_color_range="JPEG")
        f.pts = 0
        c.mux(s.encode(f))
        c.mux(s.encode(None))
    (back,) = list(open_source(full))
    assert np.abs(back.rgb.astype(int) - img).max() <= 3


def test_audio_aac_is_copied(tmp_path, av_video):
    out = tmp_path / "out.mp4"
    src = open_source(av_video)
    assert src.info.has_audio
    with VideoWriter(out, fps=src.info.fps, width=64, height=48, audio_from=av_video,
                     time_base=src.info.time_base) as wr:
        for f in src:
            wr.write(f.rgb, f.pts)
    assert _stream_codecs(out) == [("video", "h264"), ("audio", "aac")]
    (secs,) = _audio_seconds(out)
    (orig,) = _audio_seconds(av_video)
    assert secs == pytest.approx(orig, abs=0.1) and secs == pytest.approx(1.0, abs=0.1)
    assert open_source(out).info.num_frames == 25


@pytest.mark.parametrize("suffix, codec", [(".mp4", "aac"), (".mkv", "pcm_s16le")])
def test_audio_pcm_reencoded_or_copied(tmp_path, pcm_video, suffix, codec):
    out = tmp_path / f"out{suffix}"
    with open_writer(out, fps=25, width=64, height=48, audio_from=pcm_video) as wr:
        for f in open_source(pcm_video):
            wr.write(f.rgb)
    assert _stream_codecs(out) == [("video", "h264"), ("audio", codec)]
    (secs,) = _audio_seconds(out)
    assert secs == pytest.approx(1.0, abs=0.1)
    assert sum(1 for _ in open_source(out)) == 25


def test_audio_trimmed_to_shorter_video(tmp_path, av_video):
    out = tmp_path / "short.mp4"
    with VideoWriter(out, fps=25, width=64, height=48, audio_from=av_video) as wr:
        for f in itertools.islice(open_source(av_video), 10):  # 0.4 s of video
            wr.write(f.rgb)
    (secs,) = _audio_seconds(out)
    assert 0.3 < secs < 0.55


def test_atomic_write_and_abort(tmp_path):
    out = tmp_path / "out.mp4"
    wr = VideoWriter(out, fps=25, width=32, height=32)
    for i in range(60):  # past x264's lookahead, so packets reach the file
        wr.write(np.full((32, 32, 3), i, np.uint8))
    assert not out.exists()
    (tmp,) = _files(tmp_path)
    assert tmp.startswith(".out.") and tmp.endswith(".partial.mp4")
    wr.abort()
    assert _files(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, fps=25, width=32, height=32) as wr:
            wr.write(np.zeros((32, 32, 3), np.uint8))
            raise KeyboardInterrupt
    assert _files(tmp_path) == []
    with VideoWriter(out, fps=25, width=32, height=32) as wr:
        wr.write(np.zeros((32, 32, 3), np.uint8))
    assert _files(tmp_path) == ["out.mp4"]


def test_frame_folder_writer(tmp_path):
    target = tmp_path / "frames_out"
    wr = open_writer(target, fps=25, width=10, height=6, crf=18)
    assert isinstance(wr, FrameFolderWriter)
    imgs = [np.random.default_rng(i).integers(0, 256, (6, 10, 3), dtype=np.uint8) for i in range(3)]
    for img in imgs:
        wr.write(img)
    assert not target.exists()
    wr.close()
    assert _files(tmp_path) == ["frames_out"]
    assert _files(target) == ["000000.png", "000001.png", "000002.png"]
    back = [f.rgb for f in open_source(target)]
    assert all(np.array_equal(a, b) for a, b in zip(back, imgs))
    wr = open_writer(tmp_path / "aborted", width=10, height=6)
    wr.write(imgs[0])
    wr.abort()
    assert _files(tmp_path) == ["frames_out"]
    with pytest.raises(RefcolorError):
        open_writer(target, width=10, height=6)  # exists and is not empty


def test_frame_folder_writer_replaces_only_when_complete(tmp_path):
    target = tmp_path / "frames_out"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    img = np.full((6, 10, 3), 7, np.uint8)
    wr = FrameFolderWriter(target, width=10, height=6, replace=True)
    wr.write(img)
    assert _files(target) == ["old.png"]  # the old output stays until the new one is complete
    wr.abort()
    assert _files(target) == ["old.png"] and _files(tmp_path) == ["frames_out"]
    wr = FrameFolderWriter(target, width=10, height=6, replace=True)
    wr.write(img)
    wr.close()
    assert _files(target) == ["000000.png"] and _files(tmp_path) == ["frames_out"]
    single = tmp_path / "single.png"  # a file in the way is replaced by the folder
    single.write_bytes(b"x")
    with FrameFolderWriter(single, width=10, height=6, replace=True) as wr:
        wr.write(img)
    assert _files(single) == ["000000.png"]


def test_writer_bad_targets(tmp_path, av_video):
    with pytest.raises(RefcolorError) as e:
        VideoWriter(tmp_path / "nope" / "out.mp4", fps=25, width=8, height=8)
    assert "does not exist" in _one_line(e)
    with pytest.raises(RefcolorError):
        open_writer(tmp_path / "nope" / "frames", width=8, height=8)
    with pytest.raises(RefcolorError):
        VideoWriter(tmp_path / "o.mp4", fps=25, width=8, height=8, audio_from=tmp_path / "missing.mp4")
    assert isinstance(open_writer(tmp_path / "o.MKV", fps=25, width=8, height=8), VideoWriter)
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(RefcolorError) as e:
                VideoWriter(ro / "out.mp4", fps=25, width=8, height=8)
            assert "not writable" in _one_line(e)
        finally:
            ro.chmod(0o700)


def test_output_timeline_starts_at_zero_and_keeps_audio_sync(tmp_path, av_video):
    tb = Fraction(1, 1000)
    out = tmp_path / "shifted.mp4"
    with VideoWriter(out, fps=25, width=32, height=32, time_base=tb) as wr:
        for i in range(5):
            wr.write(np.zeros((32, 32, 3), np.uint8), 1400 + 40 * i)  # e.g. an MPEG-TS start time
    src = open_source(out)
    assert float(next(iter(src)).pts * src.info.time_base) == pytest.approx(0.0, abs=1e-3)
    out2 = tmp_path / "late_video.mp4"  # audio starts at 0: the video keeps its 0.2 s offset
    with VideoWriter(out2, fps=25, width=64, height=48, audio_from=av_video, time_base=tb) as wr:
        for i, f in enumerate(open_source(av_video)):
            wr.write(f.rgb, 200 + 40 * i)
    src = open_source(out2)
    assert float(next(iter(src)).pts * src.info.time_base) == pytest.approx(0.2, abs=1e-3)
    assert _audio_seconds(out2)[0] == pytest.approx(1.0, abs=0.1)

