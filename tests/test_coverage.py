"""Coverage (refcolor.coverage, `refcolor shots -r`, `colorize --coverage`): a real clip whose second
half shows an object that the reference does not hold.

The clip pans over scikit-image's cat photo (chelsea); from frame HALF on, a region of its coffee
photo is pasted in. The reference is the whole cat photo in color.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from refcolor.cli import main
from refcolor.coverage import FLAG_SHARE, MIN_GAIN, best_match, measure_coverage, sheet_path, write_sheet
from refcolor.errors import RefcolorError

N, HALF = 16, 8  # 16 frames: one shot (the cut detector keeps shots of at least 15 frames)
SIZE = "96x144"


def clip_frames() -> list[np.ndarray]:
    data = pytest.importorskip("skimage.data", reason="scikit-image's photos are needed")
    cat, coffee = data.chelsea(), data.coffee()
    frames = []
    for i in range(N):
        f = cat[20 + i: 260 + i, 40 + 2 * i: 400 + 2 * i].copy()  # a slow pan, 240x360
        if i >= HALF:
            f[60:220, 150:350] = coffee[150:310, 200:400]  # a cup the reference has never seen
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from conftest import write_gray_clip

    from skimage import data

    frames = clip_frames()
    root = tmp_path_factory.mktemp("coverage")
    (root / "data").mkdir()
    (root / "refs").mkdir()
    video = write_gray_clip(root / "data" / "film.mp4", frames)
    ref = root / "refs" / "cat.png"
    Image.fromarray(data.chelsea()).save(ref)
    return {"video": video, "ref": ref, "frames": frames, "root": root}


@pytest.fixture(scope="module")
def report(clip):
    return measure_coverage(clip["video"], [clip["ref"]], size=SIZE, device="cpu")


def test_second_half_is_flagged_and_the_first_is_not(report):
    shares = report.shares
    assert len(shares) == N and len(report.shots) == 1
    assert shares[HALF:].min() > shares[:HALF].max() + 0.15, shares
    assert shares[:HALF].max() < FLAG_SHARE <= shares[HALF:].min(), shares
    assert report.shots[0].flagged() == [(HALF, N - 1)]
    assert f"poorly covered: {HALF}-{N - 1}" in report.shots[0].line()


def test_suggests_a_frame_of_the_second_half(report):
    (first, *_), shot = report.suggestions, report.shots[0]
    assert HALF <= first.frame < N and first.shot == 0
    assert first.after <= first.before - MIN_GAIN and first.own >= FLAG_SHARE
    assert re.fullmatch(rf"{first.frame}: a color photo of this frame \(\d+% uncovered\) as -r {first.frame}:PHOTO "
                        r"takes shot 0 from \d+% to \d+% uncovered \(sampled frames\)", first.line())
    assert any(g.frame == first.frame for g in report.suggestions) and len(shot.samples) == 8


def test_sheet_tints_the_uncovered_regions(report, tmp_path):
    path = write_sheet(report, tmp_path / "sheet.png")
    img = np.asarray(Image.open(path)).astype(int)
    red = (img[..., 0] - img[..., 1] > 60) & (img[..., 0] - img[..., 2] > 60)
    assert red.mean() > 0.02  # the pasted cup's frames carry a red overlay
    assert list(tmp_path.iterdir()) == [path]  # written atomically: no partial file left


def test_best_match_is_eq3_of_the_warp():
    from refcolor.models.correspondence import center_normalize, nonlocal_warp

    g = torch.Generator().manual_seed(0)
    q, k = center_normalize(torch.randn(1, 8, 50, generator=g)), center_normalize(torch.randn(1, 8, 70, generator=g))
    _, s = nonlocal_warp(q[:, None], k, torch.zeros(1, 2, 70), 0.01)
    assert torch.allclose(best_match(q[0], k[0], chunk=16), s[0, 0, 0], atol=1e-6)


def test_meter_equals_the_warp_models_similarity(clip):
    from refcolor.coverage import CoverageMeter
    from refcolor.inference import working_size

    meter = CoverageMeter(device="cpu", size=(96, 144))
    meter.set_references([np.asarray(Image.open(clip["ref"]))])
    frames = clip["frames"][HALF - 1: HALF + 1]
    with torch.inference_mode():
        expected = meter.model.similarity(meter._work(frames)[None], meter._reference_state())[0, :, 0]
    assert np.allclose(meter.similarity(frames), expected.numpy(), atol=1e-5)
    default = CoverageMeter(meter.model)  # no size: the working size of the frames, as Colorizer picks it
    default.set_references([np.asarray(Image.open(clip["ref"]))])
    h, w = working_size(*frames[0].shape[:2])
    assert default.similarity(frames[:1]).shape == (1, h // 4, w // 4) and default.size == (h, w)


def test_shots_command_reports_coverage_and_leaves_the_input_folder_alone(clip, tmp_path, monkeypatch, capsys):
    data = clip["video"].parent
    before = sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["shots", str(clip["video"]), "-r", str(clip["ref"]), "--sheet", str(tmp_path / "shots.png"),
                 "--size", SIZE, "-q"]) == 0
    out = capsys.readouterr().out
    assert "coverage shot 0: frames 0-15" in out and f"poorly covered: {HALF}-{N - 1}" in out
    frames = [int(m) for m in re.findall(r"^(\d+): a color photo of this frame", out, re.M)]
    assert frames and all(f >= HALF for f in frames)
    assert (tmp_path / "film_coverage.png").is_file() and (tmp_path / "film_coverage.csv").is_file()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in data.iterdir()) == before

    # Fed back: a color photo of the suggested frame as -r FRAME:PHOTO covers the second half.
    photo = tmp_path / "photo.png"
    Image.fromarray(clip["frames"][frames[0]]).save(photo)
    again = measure_coverage(clip["video"], [clip["ref"], f"{frames[0]}:{photo}"], size=SIZE, device="cpu")
    assert again.shares[frames[0]:].max() < FLAG_SHARE, again.shares
    assert np.allclose(again.shares[:frames[0]], measure_coverage(clip["video"], [clip["ref"]], size=SIZE,
                                                                  device="cpu").shares[:frames[0]])


def test_sheet_never_goes_into_the_input_folder(clip, tmp_path, monkeypatch):
    video = clip["video"]
    with pytest.raises(RefcolorError, match="input's folder"):
        sheet_path(video, video.parent / "mine.png")
    monkeypatch.chdir(video.parent)
    with pytest.raises(RefcolorError, match="input's folder"):
        sheet_path(video)  # the default (current folder) is the input's folder here
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(RefcolorError, match="input's folder"):
        sheet_path(frames, frames / "sub" / "x.png")
    with pytest.raises(RefcolorError, match="PNG"):
        sheet_path(video, tmp_path / "x.jpg")
    assert sheet_path(video, output=tmp_path / "out.mp4") == (tmp_path / "out_coverage.png").resolve()


def test_colorize_coverage_writes_beside_the_output(clip, tmp_path, capsys):
    out = tmp_path / "color.mp4"
    assert main(["colorize", str(clip["video"]), "-r", str(clip["ref"]), "-o", str(out), "--coverage",
                 "--size", SIZE, "--device", "cpu", "-q"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and (tmp_path / "color_coverage.png").is_file()
    assert f"poorly covered: {HALF}-{N - 1}" in text
    data = clip["video"].parent
    assert main(["colorize", str(clip["video"]), "-r", str(clip["ref"]), "-o", str(tmp_path / "b.mp4"),
                 "--coverage", str(data / "c.png"), "--size", SIZE, "--device", "cpu", "-q"]) == 2
    assert "input's folder" in capsys.readouterr().err and not (tmp_path / "b.mp4").exists()


def test_app_preview_shows_coverage(clip, tmp_path):
    from refcolor.app.jobs import DONE
    from refcolor.app.service import App

    app = App(tmp_path / "app", keep_minutes=1)
    try:
        job = app.submit_preview(str(clip["video"]), [str(clip["ref"])], "warp", SIZE)
        assert job.wait(120), app.describe(job)
        assert job.state == DONE, app.describe(job)
        seen = {int(re.match(r"frame (\d+) ", cap).group(1)): (path, cap) for path, cap in job.result}
        assert sorted(seen) == [0, 5, 10, 15]
        for frame, (path, caption) in seen.items():
            share = int(re.search(r"; (\d+)% not covered by the references \(red\)", caption).group(1))
            img = np.asarray(Image.open(path)).astype(int)
            gray_half = img[:, : img.shape[1] // 2]
            red = ((gray_half[..., 0] - gray_half[..., 1] > 60) & (gray_half[..., 0] - gray_half[..., 2] > 60)).mean()
            if frame < HALF:
                assert share < 100 * FLAG_SHARE and "add a reference" not in caption and red < 0.1, caption
            else:
                assert share >= 100 * FLAG_SHARE and caption.endswith("add a reference for it") and red > 0.15, caption
    finally:
        app.close()


def test_bad_references_give_one_line(clip, tmp_path, capsys):
    gray = tmp_path / "gray.png"
    Image.fromarray(clip["frames"][0].mean(-1).astype(np.uint8)).save(gray)
    for ref, message in [(tmp_path / "missing.png", "reference not found"), (gray, "the reference image is gray")]:
        assert main(["shots", str(clip["video"]), "-r", str(ref), "--sheet", str(tmp_path / "s.png"),
                     "--coverage-sheet", str(tmp_path / "c.png"), "-q"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "c.png").exists()
