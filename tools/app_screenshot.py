"""Screenshot of the web app after a finished job -> docs/app.png (README's "Web app" section).

Starts the app on a free local port, loads the bundled demo clip in Debian's chromium through
Playwright, runs the preview and the full colorization with the default model and working size,
and saves the page once the result is in. Run from the repository root:

    python tools/app_screenshot.py [--out docs/app.png] [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import argparse
import re
import socket
import time
from pathlib import Path

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def wait_status(page, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = page.locator("#status textarea").input_value()
        if re.search(pattern, text):
            return text
        if "refcolor: error" in text:
            raise SystemExit(text)
        page.wait_for_timeout(250)
    raise SystemExit(f"timed out waiting for {pattern!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/app.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--size", default="", help="working size HxW (default: the app's default)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from refcolor.app.server import start

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    running = start("127.0.0.1", port, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(running.url)
            page.locator("#demo").click()
            page.locator("#video td.filename").wait_for(timeout=120_000)
            page.locator("#references td.filename").wait_for(timeout=60_000)
            if args.size:
                page.get_by_text("Shots and working size").click()
                page.locator("#size textarea, #size input").first.fill(args.size)
                page.get_by_text("Shots and working size").click()
            page.locator("#preview-btn").click()
            print(wait_status(page, r"preview done", 300))
            page.locator("#colorize-btn").click()
            print(wait_status(page, r"colorize done", 600))
            page.locator("#result-video video").wait_for()
            page.wait_for_timeout(1500)  # the video's first frame
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        running.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
