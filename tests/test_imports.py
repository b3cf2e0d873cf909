"""The video I/O modules import in any order (video_write imports video and audio_mux, audio_mux imports video)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("first", ["refcolor.video_write", "refcolor.audio_mux", "refcolor.resume", "refcolor.video"])
def test_modules_import_in_any_order(first):
    # a fresh interpreter importing any of them first must work (it once failed for video_write,
    # when video.py re-exported the writers)
    code = f"import {first}; from refcolor.video_write import VideoWriter, open_writer; import refcolor.video"
    subprocess.run([sys.executable, "-c", code], check=True)
