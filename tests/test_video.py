"""Frame sources and writers (refcolor.video / refcolor.video_write)."""
from __future__ import annotations

import itertools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
from PIL import Image  # noqa: E402

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


# ----------------------------------------------------------------------------- sources


def test_bikes_real_footage_lazy(bikes_path):
    with open_source(bikes_path) as src:
        info = src.info
        assert (info.width, info.height) == (640, 272)
        assert info.kind == "video" and info.rotation == 0 and not info.has_audio
        assert info.fps == 25 and info.num_frames == 250
        assert info.duration == pytest.approx(10.0, abs=0.05)
        frames = list(itertools.islice(src, 5))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.rgb.shape == (272, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == 5
    assert float(pts[1] * info.time_base) == pytest.approx(0.04)


def test_bikes_decoded_count_matches_container(bikes_path):
    src = open_source(bikes_path)
    assert sum(1 for _ in src) == src.info.num_frames == 250
    assert sum(1 for _ in itertools.islice(src, 3)) == 3  # iterable again (re-opens the file)
    src.close()


def test_frame_folder_natural_sort_gray_8bit(tmp_path):
    for name, value in (("f1.png", 10), ("f10.png", 30), ("f2.png", 20)):
        cv2.imwrite(str(tmp_path / name), np.full((6, 8), value, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    src = open_source(tmp_path)
    assert src.info.kind == "folder" and src.info.num_frames == 3 and src.info.fps is None
    assert (src.info.width, src.info.height) == (8, 6)
    frames = list(src)
    assert [int(f.rgb[0, 0, 0]) for f in frames] == [10, 20, 30]
    assert all(f.rgb.shape == (6, 8, 3) and f.pts is None for f in frames)


def test_frame_folder_16bit_rgba_and_jpeg(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    img16 = np.zeros((4, 5, 3), np.uint16)
    img16[..., 0], img16[..., 1], img16[..., 2] = 65535, 32896, 257  # B, G, R in OpenCV order
    cv2.imwrite(str(a / "0.png"), img16)
    cv2.imwrite(str(a / "1.png"), np.full((4, 5), 100 * 257 + 100, np.uint16))  # 16-bit gray
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = (200, 100, 50), 0
    Image.fromarray(rgba, "RGBA").save(a / "2.png")
    f0, f1, f2 = [f.rgb for f in open_source(a)]
    assert f0[0, 0].tolist() == [1, 128, 255]
    assert f1.shape == (4, 5, 3) and f1[0, 0].tolist() == [100] * 3
    assert f2[0, 0].tolist() == [200, 100, 50]
    jpg = tmp_path / "one.jpg"
    Image.fromarray(np.full((16, 24, 3), (220, 40, 60), np.uint8)).save(jpg, quality=95)
    src = open_source(jpg)
    assert src.info.kind == "image" and src.info.num_frames == 1
    (frame,) = list(src)
    assert frame.rgb.shape == (16, 24, 3)
    assert np.abs(frame.rgb.astype(int) - (220, 40, 60)).max() <= 6


def test_jpeg_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:5, :5] = 255
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    im.save(tmp_path / "0.jpg", exif=exif.tobytes(), quality=95)
    src = open_source(tmp_path)
    assert (src.info.width, src.info.height) == (20, 40)
    (frame,) = list(src)
    assert frame.rgb.shape == (40, 20, 3) and frame.rgb[:4, -4:].min() > 200


def test_frame_folder_bad_inputs(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "001.png"), np.zeros((6, 8, 3), np.uint8))
    cv2.imwrite(str(mixed / "002.png"), np.zeros((6, 9, 3), np.uint8))
    with pytest.raises(RefcolorError) as e:
        open_source(mixed)
    assert "002.png" in _one_line(e)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(RefcolorError) as e:
        open_source(empty)
    _one_line(e)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0.png").write_bytes(b"not a png at all")
    with pytest.raises(RefcolorError) as e:
        list(open_source(broken))
    assert "0.png" in _one_line(e)


@pytest.mark.parametrize("ccw, cw, corner", [(90, 270, (-1, 0)), (-90, 90, (0, -1)), (180, 180, (-1, -1))])
def test_rotation_metadata_is_applied(tmp_path, ccw, cw, corner):
    path = make_video(tmp_path / "rot.mp4", n=3, width=64, height=48, rotation=ccw)
    src = open_source(path)
    assert src.info.rotation == cw
    expect = (64, 48) if cw == 180 else (48, 64)
    assert (src.info.width, src.info.height) == expect
    frames = list(src)
    assert len(frames) == 3
    rgb = frames[0].rgb
    assert rgb.shape == (expect[1], expect[0], 3)
    assert rgb[corner[0], corner[1]].min() > 230  # the stored top-left marker moved here
    assert rgb[0, 0].min() < 230 or corner == (0, 0)


def test_bad_inputs_raise_one_line(tmp_path, bikes_path):
    with pytest.raises(RefcolorError) as e:
        open_source(tmp_path / "missing.mp4")
    _one_line(e)
    text = tmp_path / "x.mp4"
    text.write_text("hello, I am not a video\n")
    with pytest.raises(RefcolorError) as e:
        open_source(text)
    _one_line(e)
    half = tmp_path / "half.mp4"  # moov atom at the end: the index is gone
    data = bikes_path.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(RefcolorError) as e:
        open_source(half)
    _one_line(e)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(RefcolorError):
        open_source(empty)
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(audio_only), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    with pytest.raises(RefcolorError) as e:
        open_source(audio_only)
    assert "no video stream" in _one_line(e)


def test_truncated_faststart_video_raises(tmp_path):
    full = make_video(tmp_path / "fs.mp4", n=40, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RefcolorError) as e:
        list(open_source(cut))
    _one_line(e)


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

