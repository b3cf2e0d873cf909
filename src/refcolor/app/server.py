"""Starting the web app: environment for an offline Gradio, the theme, ``launch``.

Gradio is told, before it is imported, not to send analytics and to keep its upload cache
inside the app's own temporary root (removed at exit); the theme names only system fonts, so
the page loads nothing from other hosts and works with no internet. The server binds to
127.0.0.1 unless the user asks for another address, which gets a warning: the app has no
login, and whoever reaches the port can run jobs on this machine.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .service import App
from .uploads import Limits

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]


def offline_environment(cache_dir: Path) -> None:
    """Settings Gradio reads from the environment, some at import: call before importing it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir)  # uploads and results stay under the app root
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["GRADIO_SSR_MODE"] = "False"  # no Node.js server beside Python


def offline_theme():
    """Gradio's default look with system fonts only (a GoogleFont would load from Google)."""
    import gradio as gr

    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)


@dataclass
class Running:
    """A started app: its URL, and ``close()`` to stop the server and remove its files."""

    url: str
    app: App
    page: object
    remove_root: bool = False  # the root is a temporary folder that start() made

    def close(self) -> None:
        try:
            self.page.close()
        finally:
            self.app.close()
            if self.remove_root:
                shutil.rmtree(self.app.root, ignore_errors=True)


def start(host: str = "127.0.0.1", port: int = 7860, *, limits: Limits | None = None, keep_minutes: float = 60.0,
          root: str | Path | None = None, quiet: bool = False) -> Running:
    """Starts the server in a background thread and returns at once (the tests use this)."""
    temporary = root is None
    root = Path(tempfile.mkdtemp(prefix="refcolor-app-")) if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    offline_environment(root / "gradio-cache")
    from .ui import CSS, build

    limits = limits or Limits()
    app = App(root, limits, keep_minutes)
    page = build(app)
    try:
        page.queue(default_concurrency_limit=None)
        page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=quiet, show_error=True,
                    theme=offline_theme(), css=CSS, allowed_paths=[str(root)], max_file_size=int(limits.max_upload_mb * 2**20),
                    footer_links=[], inbrowser=False, share=False, ssr_mode=False, enable_monitoring=False)
    except BaseException:
        app.close()
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        raise
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{page.server_port}/"
    return Running(url, app, page, remove_root=temporary)


def serve(host: str = "127.0.0.1", port: int = 7860, *, limits: Limits | None = None, keep_minutes: float = 60.0) -> None:
    """``refcolor app``: runs until Ctrl-C."""
    if host not in LOCAL_HOSTS:
        print(f"refcolor app: warning: listening on {host}, not only this computer: anyone who can reach "
              f"port {port} can upload files and run jobs here (there is no login)", file=sys.stderr)
    running = start(host, port, limits=limits, keep_minutes=keep_minutes, quiet=True)
    print(f"refcolor app: open {running.url} in a browser (Ctrl-C stops it)", flush=True)
    # `kill` (SIGTERM) ends the app like Ctrl-C does: the server stops and its files are removed
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        running.page.block_thread()
    finally:
        signal.signal(signal.SIGTERM, previous)
        running.close()
