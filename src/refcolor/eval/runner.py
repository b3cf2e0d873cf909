"""The evaluation protocol (paper section 5, DESIGN.md "Evaluation protocol") over a dataset.

* Datasets: DAVIS (``<root>/JPEGImages/480p/<seq>/*.jpg``), a folder of frame folders, a folder of
  color videos, or a single folder of frames.
* Every frame is resized to the working size (default 216x384, ``cv2.INTER_AREA``); the input is
  its CIELAB L (``ab = 0``); the reference is the first ground-truth frame in color (or the middle
  one, or an image / a folder of ``<seq>.<ext>`` images).
* Metrics per frame (PSNR, SSIM, COLOR, LPIPS when its weights exist), mean over frames, then over
  sequences; WE (x1000) from flows between consecutive ground-truth frames (RAFT when its weights
  exist, else DIS), cached in ``<report>/flow-cache``; CDC (Liu et al.) per sequence; FID over all
  frames of the dataset when its weights exist. The ground truth is scored (COLOR, WE, CDC) as a row.
* ``components``: one trained model with each part switched off in turn (``eval.components``).
* A speed table (paper Table 3): seconds per frame of every model for each block size N, on a
  fixed clip after a warm-up.

``evaluate(config)`` returns the JSON-able summary and the comparison grids; ``report.write_report``
writes them.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..errors import RefcolorError
from ..flow import FlowCache, FlowEstimator, build_flow
from ..sequences import Sequence, discover_sequences
from ..video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, open_source, read_image
from .baselines import BASELINE_NAMES, Method, ModelMethod, build_method, gray_from_rgb
from .components import build_component_methods, summarize
from .metrics import (PSNR_CAP, WE_SCALE, FIDMetric, LPIPSMetric, Unavailable, cdc, colorfulness, mean_psnr, psnr,
                      ssim, warp_error)
from .report import device_name, render_grid, versions

METRICS = ("FID", "LPIPS", "PSNR", "SSIM", "COLOR", "WE", "CDC")
GROUND_TRUTH = "ground truth"
GRAY_COLORFULNESS = 1.0  # mean COLOR below this: the "color" ground truth is gray


@dataclass
class EvalConfig:
    """Everything ``evaluate`` needs; ``asdict`` goes into report.json."""

    data: str
    out: str
    models: list[str] = field(default_factory=list)
    baselines: bool = False
    ablations: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    size: tuple[int, int] = (216, 384)
    reference: str = "first"
    max_frames: int | None = None
    sequences: list[str] | None = None
    device: str = "auto"
    flow: str = "auto"
    speed_frames: int = 12
    threads: int | None = None
    progress: bool = True


def resize_area(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H,W,3 uint8 -> size (h, w) with area resampling."""
    h, w = size
    return rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def load_sequence(seq: Sequence, size: tuple[int, int], max_frames: int | None = None) -> list[np.ndarray]:
    """Ground-truth frames at the working size (``RefcolorError`` when sizes differ or a frame is unreadable)."""
    frames = []
    with open_source(seq.path) as src:
        for frame in src:
            if max_frames is not None and len(frames) >= max_frames:
                break
            frames.append(resize_area(frame.rgb, size))
    if not frames:
        raise RefcolorError(f"{seq.path}: no frame could be read")
    return frames


def pick_reference(spec: str, seq: Sequence, frames: list[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """``first`` | ``middle`` | an image file | a folder of ``<seq>.<ext>`` -> (reference, description)."""
    if spec == "first":
        return frames[0], "frame 0"
    if spec == "middle":
        return frames[len(frames) // 2], f"frame {len(frames) // 2}"
    path = Path(spec).expanduser()
    if path.is_dir():
        hits = [p for p in sorted(path.iterdir()) if p.stem == seq.name and p.suffix.lower() in IMAGE_SUFFIXES]
        if not hits:
            raise RefcolorError(f"no reference image {seq.name}.<jpg|png|...> in {path}")
        path = hits[0]
    elif not path.is_file():
        raise RefcolorError(f"--reference {spec!r}: use first, middle, an image file or a folder of <sequence>.<ext> images")
    return resize_area(read_image(path), size), str(path)


class MemoFlowCache(FlowCache):
    """``FlowCache`` that also keeps the current sequence's flows in memory (every method reuses them)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self._memo: dict[tuple, np.ndarray] = {}

    def flow(self, estimator: FlowEstimator, a: np.ndarray, b: np.ndarray, source: str | Path | None = None,
             pair=None) -> np.ndarray:
        key = (str(source), tuple(pair), a.shape) if source is not None and pair is not None else None
        if key is not None and key in self._memo:
            return self._memo[key].astype(np.float32)
        out = super().flow(estimator, a, b, source=source, pair=pair)
        if key is not None:
            self._memo[key] = out.astype(self.dtype)
        return out

    def clear(self) -> None:
        self._memo.clear()


def ablation_label(path: str | Path) -> tuple[str, dict[str, bool]]:
    """Label of a checkpoint from its config flags, e.g. ``ckpt: w/o Linkage`` (Table 2 style)."""
    from ..checkpoint import read_checkpoint

    cfg, _, _ = read_checkpoint(path)
    flags = {"use_transformer": cfg.use_transformer, "use_linkage": cfg.use_linkage, "double_head": cfg.double_head}
    off = [n for n, k in (("Transformer", "use_transformer"), ("Linkage", "use_linkage"), ("Double-head", "double_head"))
           if not flags[k]]
    return f"{Path(path).stem}: {'w/o ' + ' & '.join(off) if off else 'full'}", flags


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _clean(x: object) -> object:
    """JSON-able copy: ``Unavailable`` -> ``"n/a (reason)"``."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return str(x) if isinstance(x, Unavailable) else x


def mean_over_sequences(values: list[object]) -> object:
    """Mean of the numeric entries; ``None`` when not applicable; ``Unavailable`` when none is a number."""
    nums = [float(v) for v in values if _num(v)]
    if nums:
        return float(np.mean(nums))
    reasons = [v for v in values if isinstance(v, Unavailable)]
    return reasons[0] if reasons else None


class Evaluator:
    """Runs the protocol for a list of methods; ``warn`` receives one-line warnings."""

    def __init__(self, cfg: EvalConfig, methods: list[Method], warn: Callable[[str], None]) -> None:
        from ..inference import resolve_device

        self.cfg, self.methods, self.warn = cfg, methods, warn
        self.device = resolve_device(cfg.device)
        self.flow = build_flow(cfg.flow, device=self.device)
        self.cache = MemoFlowCache(Path(cfg.out) / "flow-cache")
        self.lpips = LPIPSMetric(self.device)
        self.fid = {m.name: FIDMetric(self.device) for m in methods}
        self.warnings: list[str] = []
        self.timing: dict[str, float] = {}

    def _tick(self, key: str, start: float) -> float:
        """Adds the seconds since ``start`` to ``timing[key]``; returns now."""
        now = time.perf_counter()
        self.timing[key] = self.timing.get(key, 0.0) + now - start
        return now

    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.warn(msg)

    def _we(self, frames: list[np.ndarray], gt: list[np.ndarray], seq: Sequence) -> object:
        if len(gt) < 2:
            return Unavailable("1 frame")
        return WE_SCALE * warp_error(frames, gt, self.flow, cache=self.cache, source=seq.path,
                                     indices=range(len(gt)))

    def score(self, name: str, outs: list[np.ndarray], gt: list[np.ndarray], seq: Sequence) -> dict:
        """Per-sequence metrics of one method (means over frames) and its per-frame PSNR curve."""
        p = [psnr(o, g) for o, g in zip(outs, gt)]
        lp = [self.lpips(o, g) for o, g in zip(outs, gt)] if self.lpips.available else [Unavailable(self.lpips.reason)]
        if name in self.fid:
            self.fid[name].update(outs, gt)
        metrics = {"LPIPS": mean_over_sequences(lp), "PSNR": mean_psnr(p),
                   "SSIM": float(np.mean([ssim(o, g) for o, g in zip(outs, gt)])),
                   "COLOR": float(np.mean([colorfulness(o) for o in outs])), "WE": self._we(outs, gt, seq),
                   "CDC": cdc(outs) if len(outs) > 1 else Unavailable("1 frame")}
        return {"metrics": metrics, "psnr": [min(v, PSNR_CAP) for v in p]}

    def run_sequence(self, seq: Sequence, bar) -> tuple[dict, bytes | None, tuple | None]:
        """Evaluate every method on one sequence; returns (entry, grid PNG, (gray, reference, gt))."""
        cfg, t0 = self.cfg, time.perf_counter()
        try:
            gt = load_sequence(seq, cfg.size, cfg.max_frames)
            reference, ref_desc = pick_reference(cfg.reference, seq, gt, cfg.size)
        except RefcolorError as err:
            self._warn(f"sequence {seq.name} skipped: {err}")
            bar.update(len(self.methods))
            return {"skipped": str(err)}, None, None
        gray = [g for i in range(0, len(gt), 16) for g in gray_from_rgb(np.stack(gt[i:i + 16]))]
        entry: dict = {"path": str(seq.path), "frames": len(gt), "reference": ref_desc, "methods": {}, "warnings": []}
        n_warn = len(self.warnings)
        if len(gt) < 2:
            self._warn(f"sequence {seq.name} has 1 frame: WE n/a (1 frame); the other metrics are evaluated")
        gt_color = float(np.mean([colorfulness(g) for g in gt]))
        if gt_color < GRAY_COLORFULNESS:
            self._warn(f"sequence {seq.name}: ground truth looks gray (colorfulness ~0: {gt_color:.2f}); "
                       "COLOR and color transfer from its reference are meaningless")
        self.cache.clear()
        t0 = self._tick("load + gray input", t0)
        entry["methods"][GROUND_TRUTH] = {"metrics": {"LPIPS": None, "PSNR": None, "SSIM": None, "COLOR": gt_color,
                                                      "WE": self._we(gt, gt, seq),
                                                      "CDC": cdc(gt) if len(gt) > 1 else Unavailable("1 frame")}, "psnr": []}
        self._tick("flow + ground-truth WE", t0)
        picks = sorted({0, len(gt) // 2, len(gt) - 1})
        tiles: dict[str, list[np.ndarray]] = {}
        for method in self.methods:
            bar.set_description(f"{seq.name}: {method.name}")
            start = time.perf_counter()
            try:
                outs = list(method.colorize_sequence(iter(gray), reference))
            except RefcolorError as err:
                self._warn(f"sequence {seq.name}, method {method.name}: {err}")
                na = Unavailable(str(err))
                entry["methods"][method.name] = {"metrics": {m: na for m in METRICS[1:]}, "psnr": [], "seconds_per_frame": na}
                bar.update(1)
                continue
            elapsed = time.perf_counter() - start
            t0 = self._tick(f"colorize: {method.name}", start)
            if len(outs) != len(gt):
                raise RefcolorError(f"method {method.name} returned {len(outs)} frames for {len(gt)} on {seq.name}")
            result = self.score(method.name, outs, gt, seq)
            self._tick(f"metrics: {method.name}", t0)
            result["seconds_per_frame"] = elapsed / len(gt)
            entry["methods"][method.name] = result
            tiles[method.name] = [outs[i] for i in picks]
            bar.update(1)
        entry["warnings"] = self.warnings[n_warn:]
        columns = [("gray input", [gray[i] for i in picks]), (f"reference ({ref_desc})", [reference] * len(picks))]
        columns += list(tiles.items()) + [(GROUND_TRUTH, [gt[i] for i in picks])]
        t0 = time.perf_counter()
        grid = render_grid(columns, [f"frame {i}" for i in picks], title=seq.name)
        self._tick("grids", t0)
        return entry, grid, (gray, reference, gt)

    def speed(self, clip: list[np.ndarray], reference: np.ndarray, gt: list[np.ndarray], bar) -> list[dict]:
        """Seconds per frame (DUR) of every model for each N in ``cfg.blocks``, after a warm-up."""
        rows = []
        for method in (m for m in self.methods if isinstance(m, ModelMethod)):
            c, default_n = method.colorizer, method.block_size
            for n in self.cfg.blocks:
                bar.set_description(f"speed: {method.name}, N={n}")
                method.block_size = n
                try:
                    c.set_reference(reference)
                except RefcolorError as err:
                    self._warn(f"speed table: {method.name} skipped: {err}")
                    bar.update(1)
                    continue
                c.step(np.stack(clip[:n]))  # warm-up (also encodes the reference, excluded from DUR)
                c.reset_memory()
                outs: list[np.ndarray] = []
                sync = torch.cuda.synchronize if c.device.type == "cuda" else (lambda: None)
                sync()
                start = time.perf_counter()
                for i in range(0, len(clip), n):
                    outs.extend(c.step(np.stack(clip[i:i + n])))
                sync()
                dur = (time.perf_counter() - start) / len(clip)
                rows.append({"method": method.name, "N": n, "frames": len(clip), "DUR": dur,
                             "PSNR": mean_psnr([psnr(o, g) for o, g in zip(outs, gt)]),
                             "COLOR": float(np.mean([colorfulness(o) for o in outs]))})
                bar.update(1)
            method.block_size = default_n
        return rows


def build_methods(cfg: EvalConfig) -> tuple[list[Method], dict[str, dict], list[dict]]:
    """The methods of a config (baselines, --model specs, ablation checkpoints, component rows), ablation
    flags by label and the component groups (``eval.components``)."""
    names = list(BASELINE_NAMES) if cfg.baselines else []
    names += [m for m in cfg.models if m not in names]
    methods: list[Method] = [build_method(n, device=cfg.device, size=cfg.size) for n in names]
    flags: dict[str, dict] = {}
    for path in cfg.ablations:
        label, f = ablation_label(path)
        methods.append(ModelMethod(path, device=cfg.device, size=cfg.size, label=label))
        flags[label] = f
    groups = []
    for spec in dict.fromkeys(cfg.components):
        added, group = build_component_methods(spec, methods, device=cfg.device, size=cfg.size)
        methods += added
        groups.append(group)
    seen: dict[str, int] = {}
    for m in methods:  # unique labels
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name} #{seen[m.name]}"
    if not methods:
        raise RefcolorError("nothing to evaluate: give --baselines, --model SPEC, --ablations CKPT or --components MODEL")
    return methods, flags, groups


def evaluation_sequences(cfg: EvalConfig) -> list[Sequence]:
    """The sequences directly under ``cfg.data`` (``sequences.discover_sequences``), those of
    ``cfg.sequences`` only when given; a one-line error when there are none or a name is unknown."""
    seqs = discover_sequences(cfg.data)
    if not seqs:
        raise RefcolorError(f"no sequences found in {Path(cfg.data).expanduser()}: expected DAVIS (JPEGImages/480p/<seq>/*.jpg), "
                            f"folders of frames ({', '.join(IMAGE_SUFFIXES)}) or color videos ({', '.join(VIDEO_SUFFIXES)})")
    if cfg.sequences:
        names = {s.name for s in seqs}
        unknown = [s for s in cfg.sequences if s not in names]
        if unknown:
            raise RefcolorError(f"unknown sequence(s) {', '.join(unknown)}; found: {', '.join(sorted(names))}")
        seqs = [s for s in seqs if s.name in cfg.sequences]
    return seqs


def evaluate(cfg: EvalConfig, warn: Callable[[str], None] | None = None) -> tuple[dict, dict[str, bytes]]:
    """Run the whole protocol; returns (summary for report.json, grid PNGs by file name)."""
    from tqdm import tqdm

    warn = warn or (lambda msg: tqdm.write(f"refcolor: warning: {msg}", file=sys.stderr))
    seqs = evaluation_sequences(cfg)
    if cfg.reference not in ("first", "middle") and not Path(cfg.reference).expanduser().exists():
        raise RefcolorError(f"--reference {cfg.reference!r}: use first, middle, an image file or a folder")
    methods, flags, groups = build_methods(cfg)
    ev = Evaluator(cfg, methods, warn)
    per_seq: dict[str, dict] = {}
    grids: dict[str, bytes] = {}
    clip = None
    with tqdm(total=len(seqs) * len(methods), disable=not cfg.progress, unit="run", dynamic_ncols=True) as bar:
        for seq in seqs:
            entry, grid, inputs = ev.run_sequence(seq, bar)
            per_seq[seq.name] = entry
            if grid is not None:
                grids[f"{seq.name}.png"] = grid
            if clip is None and inputs is not None:
                k = max(1, cfg.speed_frames)
                clip = (seq.name, inputs[0][:k], inputs[1], inputs[2][:k])
    evaluated = {k: v for k, v in per_seq.items() if "skipped" not in v}
    if not evaluated:
        raise RefcolorError("no sequence could be evaluated: " + "; ".join(f"{k}: {v['skipped']}" for k, v in per_seq.items()))
    speed: list[dict] = []
    n_models = sum(isinstance(m, ModelMethod) for m in methods)
    if cfg.blocks and n_models and clip is not None:
        with tqdm(total=n_models * len(cfg.blocks), disable=not cfg.progress, unit="run", dynamic_ncols=True) as bar:
            t0 = time.perf_counter()
            speed = ev.speed(clip[1], clip[2], clip[3], bar)
            ev._tick("speed table", t0)
    rows = [m.name for m in methods] + [GROUND_TRUTH]
    mean: dict[str, dict] = {}
    for name in rows:
        mean[name] = {m: mean_over_sequences([e["methods"][name]["metrics"][m] for e in evaluated.values()
                                              if name in e["methods"]]) for m in METRICS[1:]}
        counted = [e for e in evaluated.values() if _num(e["methods"].get(name, {}).get("metrics", {}).get("PSNR"))]
        mean[name]["sequences"] = len(counted) if name != GROUND_TRUTH else len(evaluated)
        fid = ev.fid.get(name)
        mean[name]["FID"] = None if fid is None else (fid.compute() if fid.available else Unavailable(fid.reason))
        spf = [e["methods"][name].get("seconds_per_frame") for e in evaluated.values() if name in e["methods"]]
        mean[name]["seconds_per_frame"] = mean_over_sequences(spf) if name != GROUND_TRUTH else None

    summary = {
        "protocol": "refcolor evaluation (paper section 5): means over frames, then over sequences; WE x1000",
        "config": {**asdict(cfg), "size": list(cfg.size)},
        "versions": versions(), "device": device_name(ev.device), "flow": ev.flow.identity,
        "methods": [{"name": m.name, "kind": m.kind, **({"spec": m.spec} if isinstance(m, ModelMethod) else {}),
                     **({"flags": flags[m.name]} if m.name in flags else {}),
                     **({"ablation": m.ablation} if getattr(m, "ablation", None) else {})} for m in methods],
        "metrics": list(METRICS), "rows": rows, "mean": _clean(mean), "sequences": _clean(per_seq),
        "speed": {"sequence": clip[0] if clip else None, "rows": speed},
        "components": _clean(summarize(groups, mean)),
        "warnings": ev.warnings, "timing_seconds": {k: round(v, 2) for k, v in ev.timing.items()},
    }
    return summary, grids
