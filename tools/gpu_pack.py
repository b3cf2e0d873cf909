"""Pack what a GPU lease needs into ``.gpu/`` (git-ignored via .git/info/exclude); prints what travels.

    python tools/gpu_pack.py                                   # data, Lite0, wheels (call 1 starts from lite)
    python tools/gpu_pack.py --init runs/NAME/model-best.safetensors   # ... and start from these weights
    python tools/gpu_pack.py --prev /work/.device/.../files   # call 2: what call 1 brought back

The device's ``run`` carries the working tree plus at most 8 ``carry`` paths, 64 MiB in all, so:

* ``.gpu/vid/<sequence>.mp4``: every training frame folder, every training clip (whole: the long
  reference gaps) and every DAVIS train sequence of ``--train`` (the trainer holds the six longest out
  for validation, as on the CPU), scaled (area) to cover 270x480 (the 216x384 working size with the
  1.25 zoom) and encoded as H.264 (CRF 19): ~25 MiB instead of 157. tools/gpu_train.py decodes them
  back into frame folders with OpenCV there (the GPU image has no PyAV).
* ``.gpu/lite0.pt``: the ImageNet Lite0 weights (not in the GPU image) without the parts refcolor never
  runs (stage 7, the 1280-channel head, the classifier: 8.8 of 17.9 MiB); tools/gpu_train.py restores
  the package there with zeros in their place (``restore_lite0``: the backbone, the warp baseline and the
  perceptual stand-in get bitwise the same weights).
* ``.gpu/whl/``: kornia + kornia_rs wheels for the GPU image's Python 3.12.
* ``.gpu/init.safetensors`` (``--init``): fp16 copy of the weights to start from; without it the
  packaged ``src/refcolor/weights/lite.safetensors`` (already in the tree) is the start.
* ``.gpu/prev/`` (``--prev``): the files a previous call brought back (model-best.safetensors,
  summary.json, run.tar.gz, checkpoint.tar if it fit): the next call continues from them.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / ".gpu"
COVER = (270, 480)
LIMIT_MIB = 64.0
KORNIA = ("kornia==0.9.0", "kornia_rs==0.2.0")
# timm names (refcolor.models.backbones.map_lite0_keys) of the Lite0 parts refcolor never runs:
# the backbone keeps stages 0-4, the perceptual stand-in runs stages 0-5, the warp baseline taps 1, 2, 4
LITE0_UNUSED = ("blocks.6.", "conv_head", "bn2", "classifier")


def trim_lite0(src: Path, dst: Path) -> tuple[int, int]:
    """Save the Lite0 state dict of ``src`` without LITE0_UNUSED (their shapes and the key order kept)."""
    import timm
    import torch

    from refcolor.models.backbones import map_lite0_keys

    sd = torch.load(src, map_location="cpu", weights_only=True)
    depths = [len(s) for s in timm.create_model("tf_efficientnet_lite0", pretrained=False).blocks]
    names = map_lite0_keys(list(sd), depths)
    dropped = {k: list(v.shape) for k, v in sd.items() if names[k].startswith(LITE0_UNUSED)}
    kept = {k: v for k, v in sd.items() if k not in dropped}
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"order": list(sd), "kept": kept, "dropped": dropped}, dst)
    return len(kept), len(dropped)


def scaled(img):
    import cv2

    h, w = img.shape[:2]
    s = max(COVER[0] / h, COVER[1] / w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]  # yuv420p needs even sides


def encode(frames, path: Path) -> None:
    import av
    import numpy as np

    frames = [scaled(f) for f in frames]
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": "19", "preset": "slow"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="bgr24")))
        c.mux(s.encode())


def pack_data(train: Path, vid: Path) -> None:
    import av
    import cv2

    shutil.rmtree(vid, ignore_errors=True)
    vid.mkdir(parents=True)
    for seq in sorted((train / "frames").iterdir()) if (train / "frames").is_dir() else []:
        files = sorted(f for f in seq.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if files:
            encode([cv2.imread(str(f)) for f in files], vid / f"{seq.name}.mp4")
    for clip in sorted((train / "clips").glob("*.mp4")):  # whole: the long reference gaps live there
        with av.open(str(clip)) as c:
            encode([fr.to_ndarray(format="bgr24") for fr in c.decode(video=0)], vid / f"clip-{clip.stem}.mp4")
    for video in sorted((train / "davis").glob("*.mp4")):  # the longest real sequences
        with av.open(str(video)) as c:
            encode([fr.to_ndarray(format="bgr24") for fr in c.decode(video=0)], vid / video.name)


def tree_bytes() -> int:
    """Bytes of what every call sends anyway: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    files = {ROOT / p for p in out.decode().split("\0") if p}
    return sum(f.stat().st_size for f in files if f.is_file())


def carry_paths() -> list[str]:
    """The ``carry`` list for the next call: what .gpu/ holds."""
    names = ("vid", "lite0.pt", "whl", "init.safetensors", "prev")
    return [f".gpu/{n}" for n in names if (GPU / n).exists()]


def ignore_gpu_dir() -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.is_file() else ""
    if "/.gpu/" not in text.split():
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + "/.gpu/\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    ap.add_argument("--init", type=Path, help="refcolor checkpoint the first call starts from (default: packaged lite)")
    ap.add_argument("--prev", type=Path, help="folder of the files a previous gpu_train.py call brought back")
    ap.add_argument("--skip-data", action="store_true", help="keep .gpu/vid as it is")
    args = ap.parse_args()
    ignore_gpu_dir()
    if not args.skip_data or not (GPU / "vid").is_dir():
        if not args.train.is_dir():
            print(f"error: training data folder {args.train} not found", file=sys.stderr)
            return 2
        pack_data(args.train, GPU / "vid")
    if not (GPU / "lite0.pt").is_file():
        from refcolor.models.backbones import lite0_weights_path

        kept, dropped = trim_lite0(lite0_weights_path(), GPU / "lite0.pt")
        print(f"lite0.pt: {kept} tensors kept, {dropped} unused ones dropped")
    if not list((GPU / "whl").glob("kornia-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", "-d", str(GPU / "whl"), *KORNIA], check=True)
    if args.init is not None:
        subprocess.run([sys.executable, str(ROOT / "tools" / "export_model.py"), str(args.init),
                        "--out", str(GPU / "init.safetensors"), "--note", f"gpu_pack --init {args.init}"], check=True)
    if args.prev is not None:
        files = [f for f in ("model-best.safetensors", "summary.json", "run.tar.gz", "checkpoint.tar")
                 if (args.prev / f).is_file()]
        if "summary.json" not in files:
            print(f"error: {args.prev} holds no summary.json of a gpu_train.py call", file=sys.stderr)
            return 2
        shutil.rmtree(GPU / "prev", ignore_errors=True)
        (GPU / "prev").mkdir(parents=True)
        for f in files:
            shutil.copy(args.prev / f, GPU / "prev" / f)
        (GPU / "init.safetensors").unlink(missing_ok=True)  # the previous call's weights supersede it
    carry = carry_paths()
    sizes = {p: sum(f.stat().st_size for f in (ROOT / p).rglob("*") if f.is_file()) if (ROOT / p).is_dir()
             else (ROOT / p).stat().st_size for p in carry}
    tree = tree_bytes()
    total = (tree + sum(sizes.values())) / 2**20
    for p, n in sizes.items():
        print(f"  {p}: {n / 2**20:.1f} MiB")
    print(f"  working tree: {tree / 2**20:.1f} MiB")
    print(f"travels: {total:.1f} MiB of {LIMIT_MIB:.0f}; carry = {carry}")
    if total > LIMIT_MIB:
        print(f"error: {total:.1f} MiB is over the {LIMIT_MIB:.0f} MiB a call carries", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
