"""Modules import in any order (video.py re-exports the writers of video_write, which imports video)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["refcolor.video_write", "refcolor.audio_mux", "refcolor.resume", "refcolor.video"])
def test_modules_import_in_any_order(first):
    # video.py re-exports the writers of video_write, which imports video: a fresh interpreter
    # importing either first must work (it used to fail for video_write)
    code = f"import {first}; from refcolor.video import VideoWriter, open_writer; import refcolor.video_write"
    subprocess.run([sys.executable, "-c", code], check=True)
