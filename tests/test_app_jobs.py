"""The web app's parts: the job queue, upload names and limits, the per-shot table, preview
frame seeking, and the pipeline's cancel hook (see test_app.py for the page and the browser)."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from refcolor.app.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobCancelled, JobQueue
from refcolor.app.uploads import Limits, display_name, import_references, import_video, safe_suffix
from refcolor.errors import RefcolorError
from refcolor.video import VIDEO_SUFFIXES, open_source

SIZE = "64x112"


# -- job queue -------------------------------------------------------------------------------

def test_queue_runs_one_job_at_a_time_in_order_with_positions(tmp_path):
    queue = JobQueue(tmp_path / "jobs")
    gate, running, order = threading.Event(), [], []

    def work(name):
        def fn(job):
            running.append(name)
            assert len(running) == 1, "two jobs ran at once"
            if name == "a":
                gate.wait(10)
            order.append(name)
            running.remove(name)
            return name
        return fn

    try:
        a, b, c = (queue.submit(work(n), n) for n in "abc")
        deadline = time.monotonic() + 5
        while a.state != RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (a.state, b.state, c.state) == (RUNNING, QUEUED, QUEUED)
        assert [queue.position(j) for j in (a, b, c)] == [0, 1, 2]
        assert a.folder.parent == tmp_path / "jobs" and a.folder.is_dir() and len({a.folder, b.folder, c.folder}) == 3
        gate.set()
        assert c.wait(10)
        assert order == ["a", "b", "c"] and [j.result for j in (a, b, c)] == ["a", "b", "c"]
        assert all(j.state == DONE for j in (a, b, c))
    finally:
        gate.set()
        queue.shutdown()
    assert not (tmp_path / "jobs").exists()


def test_queue_cancel_failure_and_cleanup(tmp_path):
    queue = JobQueue(tmp_path / "jobs", keep_seconds=60)
    started = threading.Event()

    def endless(job):
        started.set()
        for i in range(10_000):
            job.report(i, 10_000)
            time.sleep(0.005)

    try:
        running = queue.submit(endless, "colorize")
        waiting = queue.submit(lambda job: "never", "preview")
        assert started.wait(10)
        assert queue.cancel(waiting.id) and waiting.state == CANCELLED and not waiting.folder.exists()
        assert queue.cancel(running.id) and running.wait(10)
        assert running.state == CANCELLED and not running.folder.exists()
        assert not queue.cancel(running.id)  # already over
        bad = queue.submit(lambda job: (_ for _ in ()).throw(RefcolorError("the reference image is gray")), "colorize")
        crash = queue.submit(lambda job: 1 / 0, "colorize")
        good = queue.submit(lambda job: "ok", "colorize")
        assert good.wait(10)
        assert (bad.state, bad.error) == (FAILED, "the reference image is gray")
        assert crash.state == FAILED and crash.error.startswith("unexpected ZeroDivisionError")
        assert good.state == DONE and good.result == "ok"  # the worker survived both
        assert queue.sweep(now=time.monotonic() + 30) == []  # kept for keep_seconds
        swept = queue.sweep(now=time.monotonic() + 61)
        assert set(swept) == {j.id for j in (running, waiting, bad, crash, good)} and not good.folder.exists()
        assert queue.get(good.id) is None
        with pytest.raises(RefcolorError):  # a failing prepare queues nothing and leaves no folder
            queue.submit(lambda job: None, "x", prepare=lambda job: (_ for _ in ()).throw(RefcolorError("bad upload")))
        assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == []
    finally:
        queue.shutdown()


def test_progress_rate_and_eta(tmp_path, monkeypatch):
    from refcolor.app import jobs

    clock = iter([100.0, 102.0])
    monkeypatch.setattr(jobs.time, "monotonic", lambda: next(clock, 103.0))
    job = jobs.Job("0001", "colorize", tmp_path, lambda j: None)
    job.report(10, 110)  # first report at t=100
    job.report(30, 110)  # 20 frames in 2 s
    assert job.rate == pytest.approx(10.0) and job.eta == pytest.approx(8.0)
    job._cancel.set()
    with pytest.raises(JobCancelled):
        job.report(31, 110)


# -- upload names and limits -----------------------------------------------------------------

def test_upload_names_are_never_paths(tmp_path, app_media):
    assert display_name("../../etc/passwd.mp4") == "passwd.mp4"
    assert display_name("C:\\films\\x\x00y\n.mp4") == "xy.mp4"
    assert display_name("") == "upload" and len(display_name("a" * 500 + ".mp4")) == 60
    assert safe_suffix("Film.MP4", VIDEO_SUFFIXES, "video") == ".mp4"
    for bad in ("run.exe", "film.mp4.sh", "noext", "../x.mp4/."):
        with pytest.raises(RefcolorError, match="not a supported video file type"):
            safe_suffix(bad, VIDEO_SUFFIXES, "video")
    # a hostile name (shell characters, a newline, an encoded climb): only its text survives, for messages
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    upload = uploads / "..%2F..%2Fx; rm -rf ~\n.mp4"
    shutil.copyfile(app_media["clip"], upload)
    folder = tmp_path / "job"
    folder.mkdir()
    names: dict[Path, str] = {}
    video = import_video(upload, folder, Limits(), names)
    refs = import_references([app_media["ref"], app_media["ref"]], folder, Limits(), names)
    assert video == folder / "input.mp4" and refs == [folder / "ref-0.png", folder / "ref-1.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["input.mp4", "ref-0.png", "ref-1.png"]
    assert names[video] == "..%2F..%2Fx; rm -rf ~.mp4"  # shown to the user, never opened


def test_upload_limits(tmp_path, app_media):
    folder = tmp_path / "job"
    folder.mkdir()
    size_mb = app_media["clip"].stat().st_size / 2**20
    with pytest.raises(RefcolorError, match=r"old film.mp4 is \d+ MB; this app takes files up to .* --max-upload-mb"):
        import_video(app_media["clip"], folder, Limits(max_upload_mb=size_mb / 2), {})
    with pytest.raises(RefcolorError, match=r"old film.mp4 is 0.5 s long; this app takes videos up to 0.1 s .*--max-seconds"):
        import_video(app_media["clip"], folder, Limits(max_seconds=0.1), {})
    with pytest.raises(RefcolorError, match="at most 1"):
        import_references([app_media["ref"]] * 2, folder, Limits(max_references=1), {})
    with pytest.raises(RefcolorError, match="upload limits must be positive"):
        Limits(max_upload_mb=0)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(RefcolorError, match="empty.png: the file is empty"):
        import_references([empty], folder, Limits(), {})


def test_shot_reference_table_and_specs(tmp_path):
    from refcolor.app.tasks import JobSpec, parse_shot_references

    assert parse_shot_references("0: 1\n# comment\n30: 2, 1\n\n76:2", 2) == {0: [0], 30: [1, 0], 76: [1]}
    for text, message in [("0: 3", "there is no reference 3"), ("zero: 1", "line 1"), ("", "empty"), ("5", "line 1")]:
        with pytest.raises(RefcolorError, match=message):
            parse_shot_references(text, 2)
    refs = [tmp_path / "ref-0.png", tmp_path / "ref-1.png"]
    spec = JobSpec(tmp_path / "input.mp4", refs, "warp", shots="per shot", starts={30: [1], 0: [0]})
    assert spec.reference_specs() == [f"0:{refs[0]}", f"30:{refs[1]}"]
    assert JobSpec(tmp_path / "input.mp4", refs, "warp").reference_specs() == [str(p) for p in refs]


def test_preview_frames_seek_to_the_same_frames_as_decoding(app_media):
    from refcolor.app.tasks import sample_frames
    from refcolor.video import seek_frames

    seeked = sample_frames(app_media["clip"], 4)
    assert [i for i, _ in seeked] == [0, 4, 7, 11]
    with open_source(app_media["clip"]) as source:
        info = source.info
        decoded = {f.index: f.rgb for f in source}
    assert len(seek_frames(app_media["clip"], [0, 4, 7, 11], info.fps)) == 4
    for index, rgb in seeked:
        assert np.array_equal(rgb, decoded[index]), index


def test_cancel_hook_stops_the_pipeline_and_leaves_no_output(app_media, tmp_path):
    from refcolor import colorize

    out, seen = tmp_path / "out.mp4", []

    def stop(done, total):
        seen.append((done, total))
        raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        colorize(app_media["clip"], app_media["ref"], out, model="warp", size=SIZE, device="cpu", progress=False,
                 on_progress=stop)
    assert seen == [(3, app_media["frames"])] and not out.exists()


def test_model_choices_follow_the_library_default(tmp_path, monkeypatch):
    from refcolor import checkpoint
    from refcolor.app.service import App
    from refcolor.app.tasks import available_models, default_model

    monkeypatch.delattr(checkpoint, "DEFAULT_MODEL", raising=False)
    monkeypatch.delattr(checkpoint, "resolve_default", raising=False)
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    assert default_model() == "warp" and available_models() == ["warp"]
    (tmp_path / "lite.safetensors").write_bytes(b"weights")  # a preset whose weights ship is offered
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL", "default", raising=False)
    monkeypatch.setattr(checkpoint, "resolve_default", lambda name: "lite" if name == "default" else name, raising=False)
    assert default_model() == "lite" and available_models() == ["lite", "warp"]
    app = App(tmp_path / "root")
    try:
        assert app.default_model() == "lite"
        monkeypatch.setattr(checkpoint, "resolve_default", lambda name: "paper", raising=False)
        assert app.default_model() == "warp"  # a default without weights: the first offered
    finally:
        app.close()


def test_done_line_says_one_frame(tmp_path):
    """The status line of a finished one-frame job says "1 frame" (it said "1 frames")."""
    from refcolor.app.jobs import Job
    from refcolor.app.service import App

    app = App(tmp_path / "root", Limits(), keep_minutes=1)
    try:
        job = Job("j1", "preview", tmp_path, fn=lambda job: None, state=DONE, done=1, total=1, started=0.0, finished=2.0)
        assert app.describe(job).startswith("preview done: 1 frame in 2.0 s")
        job.done = 4
        assert app.describe(job).startswith("preview done: 4 frames in 2.0 s")
    finally:
        app.close()
