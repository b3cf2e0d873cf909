"""Frame sources (refcolor.video): videos, frame folders, images, rotation, bad inputs.
Writers: tests/test_video_write.py."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")
from PIL import Image  # noqa: E402

from conftest import make_video  # noqa: E402
from refcolor.errors import RefcolorError  # noqa: E402
from refcolor.video import open_source  # noqa: E402


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


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
