"""One short lease on a lent GPU, as one prepared script (the device gives ~10 minutes a call).

    python3 tools/gpu_session.py --budget 540 --out $OUT

Phases, each with its own time limit so that a hang cannot eat the lease:
  1. decode the carried training videos (``.gpu/vid/*.mp4``, H.264 copies of ../shared/data/train
     made by tools/gpu_pack.py, because the lease carries at most 64 MiB) into frame folders;
  2. network throughput on CUDA, fp32 and bf16 (benchmarks/throughput.py);
  3. seconds per training step for ``lite`` and ``paper`` alone (batch 8, bf16, 216x384);
  4. the remaining time: fine-tuning variants of ``lite`` side by side from ``.gpu/init.safetensors``
     (else the packaged lite; packages set up as tools/gpu_train.py does),
     validated on the held-out training clips every ``--val-every`` steps, stopped by SIGTERM at the
     deadline (the trainer writes its checkpoint and EMA export on SIGTERM).
Everything small goes into ``OUT/results.tar.gz``; each variant's best EMA weights into
``OUT/<variant>.safetensors`` (fp32, < 16 MiB).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from refcolor.cli import main; sys.exit(main())"]
# Loss-weight variants (QUALITY-NOTES / docs/TRAINING.md ablation: the auxiliary terms cost the
# colorization subnet ~0.4 dB on CPU). "aux" = configs/lite.toml's weights.
VARIANTS = {
    "l1warp": ["w_perc=0", "w_temporal=0", "w_smooth=0", "w_adv=0"],
    "temporal-adv": ["w_perc=0", "w_temporal=0.5", "w_smooth=0", "w_adv=0.2"],
    "aux": [],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def decode_videos(src: Path, dst: Path) -> int:
    import cv2

    def one(video: Path) -> int:
        out = dst / video.stem
        out.mkdir(parents=True, exist_ok=True)
        cap, n = cv2.VideoCapture(str(video)), 0
        while True:
            ok, frame = cap.read()
            if not ok:
                return n
            cv2.imwrite(str(out / f"{n:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 97])
            n += 1

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(one, sorted(src.glob("*.mp4"))))


def run(cmd: list[str], limit: float, logfile: Path) -> int:
    log(f"run ({limit:.0f} s max): {' '.join(cmd[3:] if cmd[:3] == CLI else cmd)}")
    with logfile.open("w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            return p.wait(timeout=max(1.0, limit))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # the main process only: its loader workers must not die first
            try:
                return p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                return -9


def train_cmd(out: Path, frames: Path, steps: int, sets: list[str], preset: str = "lite",
              device: str = "cuda") -> list[str]:
    cfg = ROOT / "configs" / f"{preset}.toml"
    base = ["data=[]", "val_data=[]", "batch_size=8", "crop_height=0", "crop_width=0", "threads=2",
            "log_every=5", "checkpoint_every=100000"]
    cmd = [*CLI, "train", "--config", str(cfg), "--data", str(frames), "--data", "skimage", "--out", str(out),
           "--steps", str(steps), "--device", device, "-q"]
    for s in base + sets:
        cmd += ["--set", s]
    return cmd


def step_seconds(run_dir: Path, skip: int = 3) -> float | None:
    try:
        with (run_dir / "log.csv").open() as f:
            times = [float(r["time_s"]) for r in csv.DictReader(f)]
        times = times[min(skip, len(times) - 1):]  # the first steps include loader start-up and warm-up
        return statistics.median(times) if times else None
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole script")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/refcolor-gpu"))
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="extra train --set for every run (dry runs)")
    args = ap.parse_args()
    t0 = time.time()
    left = lambda: args.budget - (time.time() - t0)  # noqa: E731
    work, out = args.work, args.out
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}

    sys.path.insert(0, str(ROOT / "tools"))
    from gpu_train import PACKAGED, setup_packages  # kornia from the carried wheels, the trimmed Lite0 restored

    setup_packages(ROOT / ".gpu", work / "site")
    init = ROOT / ".gpu" / "init.safetensors"
    init = init if init.is_file() else PACKAGED
    n = decode_videos(ROOT / ".gpu" / "vid", work / "frames")
    log(f"decoded {n} frames")

    if not args.skip_bench:
        for name, extra, sizes, blocks in (
                ("throughput-cuda-fp32", [], ["--sizes", "216x384", "432x768"], ["3"]),
                ("throughput-cuda-bf16", ["--amp"], ["--sizes", "216x384"], ["1", "3"])):
            rc = run([sys.executable, "benchmarks/throughput.py", "--device", args.device, "--presets", "warp",
                      "lite", "paper", *sizes, "--blocks", *blocks, "--min-seconds", "1",
                      "--name", name, *extra], min(50, left() - 330), logs / f"{name}.log")
            log(f"{name}: rc {rc}")
        for preset, sets in (("lite", []), ("paper", ["model.pretrained=false"])):
            rd = work / "runs" / f"timing-{preset}"
            rc = run(train_cmd(rd, work / "frames", 8, ["num_workers=12", "val_holdout=[]", "adv_start=0", *sets, *args.sets],
                               preset, args.device), min(50, left() - 300), logs / f"timing-{preset}.log")
            summary[f"s_per_step_{preset}"] = step_seconds(rd)
            log(f"timing {preset}: rc {rc}, median s/step (batch 8) {summary[f's_per_step_{preset}']}")

    # fine-tuning variants side by side until the deadline
    per_step = summary.get("s_per_step_lite") or 0.3
    train_s = left() - 45
    # side by side they share the GPU; a small network does not fill it, so the slowdown is below
    # len(VARIANTS): plan for 0.6x of it (a run stopped by the deadline keeps its EMA weights)
    steps = max(50, int(train_s / (per_step * len(VARIANTS) * 0.6)))
    log(f"variants {list(VARIANTS)}: {train_s:.0f} s, planned {steps} steps each")
    procs = {}
    for name, sets in VARIANTS.items():
        rd = work / "runs" / name
        cmd = train_cmd(rd, work / "frames", steps,
                        ["num_workers=4", f"init_from={init}", "adv_start=0",
                         'val_holdout=["davis-car-turn", "fresco-dog"]', f"val_every={args.val_every}",
                         "ema_decay=0.99", "lr_milestones=[0.7, 0.9]", *sets, *args.sets],
                        device=args.device)
        f = (logs / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    deadline = time.time() + train_s
    while time.time() < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(2)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # the trainer stops after its step and writes a checkpoint
    for name, p in procs.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        rd = work / "runs" / name
        best = rd / "model-best.safetensors"
        src = best if best.is_file() else rd / "model.safetensors"
        if src.is_file():
            shutil.copy(src, out / f"{name}.safetensors")
        summary[f"{name}_rc"] = p.returncode
        summary[f"{name}_s_per_step"] = step_seconds(rd)
        log(f"variant {name}: rc {p.returncode}, s/step {summary[f'{name}_s_per_step']}, weights from {src.name}")

    (work / "summary.txt").write_text("\n".join(f"{k}: {v}" for k, v in summary.items()) + "\n")
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        tar.add(work / "summary.txt", "summary.txt")
        tar.add(logs, "logs")
        for f in (ROOT / "benchmarks" / "results").glob("throughput-cuda*"):
            tar.add(f, f"bench/{f.name}")
        for rd in (work / "runs").glob("*"):
            for name in ("log.csv", "val.csv", "config.json", "loss.png", "val_baseline.json"):
                if (rd / name).is_file():
                    tar.add(rd / name, f"runs/{rd.name}/{name}")
    log(f"done in {time.time() - t0:.0f} s; {summary}")


if __name__ == "__main__":
    main()
