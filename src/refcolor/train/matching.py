"""Stage 1 of training: the matching alone, on frozen cached taps with sparse targets.

QUALITY-NOTES.md measured that learning the matching pays at once on a CPU, and that a loss on
2,048 random target positions per pair costs a fraction of a whole frame. What stage 1 trains is
exactly head 1's key path of ``CorrespondenceSubnet.heads`` with ``key_mix``:

    learned = up(head1(R')) + key_proj(raw taps)       # raw taps at h4, head1(R') at h8 (frozen here)
    key     = [sqrt(1 - m) norm(raw), sqrt(m) norm(learned)]
    W1      = softmax(key_t . key_ref / tau) ab_ref     # nonlocal_warp, fp32

so ``key_proj``, the mix ``m`` and ``tau`` learn, while the backbone taps and ``head1(R')`` of
every frame are computed once by the frozen network and cached (safetensors, fp16). The loss is
L1 between W1 and the target's chroma pooled to h4, at ``targets`` random positions. Pairs are
drawn like evaluation: reference and target of the same sequence, at least ``gap_min`` frames
apart, anywhere in the sequence. The result is a full checkpoint (``matching-best.safetensors``)
for stage 2 (``refcolor train --set init_from=...``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoint import save_model
from ..color import gray_rgb_from_l, lab_to_rgb, normalize_lab, denormalize_lab, rgb_to_lab
from ..config import get_config
from ..cpu_math import flush_denormals
from ..errors import RefcolorError
from ..eval.metrics import colorfulness, psnr
from ..models.correspondence import nonlocal_warp
from ..models.network import RefColorNet, build_model
from .runtime import SCALAR_PARAMS, append_csv, load_init_weights
from .sources import Sequence, discover

TRAINED = ("correspondence.key_proj.", "correspondence.key_mix_logit", "correspondence.tau_logit")


@dataclass
class MatchingConfig:
    init_from: str  # checkpoint whose frozen parts fill the cache (e.g. the packaged lite)
    data: list = field(default_factory=list)  # training roots (see train/sources.py)
    out: str = ""
    cache: str = ""  # cache folder (default OUT/cache); runs from the same frozen taps can share one
    preset: str = "lite"
    height: int = 216
    width: int = 384
    steps: int = 600
    pairs: int = 4  # reference-target pairs per step
    targets: int = 2048  # target positions per pair (of the h4 grid's 5,184 at 216x384)
    gap_min: int = 5  # frames between reference and target
    frame_stride: int = 2  # cache every k-th frame of a training sequence
    max_frames: int = 160  # per training sequence, before the stride
    lr: float = 1e-3
    lr_scalars: float = 3e-3
    lr_tau: float = -1.0  # tau's own rate (< 0: lr_scalars). L1 at h4 keeps raising tau past what validation wants
    val_count: int = 6  # held-out sequences (chosen from the data, logged)
    val_min_frames: int = 60
    val_max_frames: int = 100
    val_stride: int = 3  # every 3rd frame is scored (the full-model validation scores every frame)
    val_every: int = 100
    seed: int = 0
    threads: int = 1


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def center_crop(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
    return np.ascontiguousarray(rgb[top : top + h, left : left + w])


@torch.no_grad()
def encode_frames(model: RefColorNet, rgb: np.ndarray) -> dict[str, torch.Tensor]:
    """T,H,W,3 uint8 -> frozen matching inputs: raw taps T,C,h4,w4 and head1(R') T,K,h8,w8 (fp16),
    chroma pooled to h4 T,2,h4,w4 (fp32). Each frame is a block of its own with an empty memory."""
    cs, bb = model.correspondence, model.backbone
    lab = normalize_lab(rgb_to_lab(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255))
    taps = bb.taps(gray_rgb_from_l(lab[:, :1]))
    r_low, r_high = bb.assemble(taps)
    grid = cs.token_grid(1, *r_high.shape[-2:])
    high, tokens = cs.embed_high(r_high, grid)
    high_aug, _ = cs.augment(high, tokens, grid)
    head1 = cs.head1(cs.fuse(high_aug, r_low))
    raw = bb.match_features(taps)
    ab4 = F.adaptive_avg_pool2d(lab[:, 1:], raw.shape[-2:])
    return {"raw": raw.half(), "head1": head1.half(), "ab4": ab4}


def build_cache(model: RefColorNet, seq: Sequence, indices: list[int], size, folder: Path, keep_rgb: bool) -> Path:
    """Cache file of ``seq``'s frames ``indices`` (written once, atomically; reused after)."""
    path = folder / f"{_safe(seq.name)}-{len(indices)}-{indices[1] - indices[0] if len(indices) > 1 else 1}.safetensors"
    if path.is_file():
        return path
    frames = seq.read(indices, size)
    rgb = np.stack([center_crop(frames[i], size) for i in indices])
    tensors = {}
    for start in range(0, len(rgb), 8):
        part = encode_frames(model, rgb[start : start + 8])
        for k, v in part.items():
            tensors.setdefault(k, []).append(v)
    tensors = {k: torch.cat(v).contiguous() for k, v in tensors.items()}
    if keep_rgb:
        tensors["rgb"] = torch.from_numpy(rgb)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    return path


def matching_keys(model: RefColorNet, raw: torch.Tensor, head1: torch.Tensor) -> torch.Tensor:
    """Head 1's mixed key from cached inputs: raw B,C,h4,w4; head1 B,K,h8,w8 -> B,C+K,P."""
    cs = model.correspondence
    learned = F.interpolate(head1.float(), size=raw.shape[-2:], mode="bilinear", align_corners=False)
    return cs.mix_keys(raw.float(), learned + cs.key_proj(raw.float()))


def sample_pair(rng: np.random.Generator, n: int, stride: int, gap_min: int) -> tuple[int, int]:
    """(reference, target) cache indices, never equal, at least ``gap_min`` frames apart when the
    sequence allows, otherwise as far apart as it allows; uniform over such pairs."""
    need = min(max(1, math.ceil(gap_min / stride)), n - 1)
    while True:
        r, t = (int(x) for x in rng.integers(0, n, size=2))
        if abs(r - t) >= need:
            return r, t


def matching_optimizer(model: RefColorNet, cfg: MatchingConfig) -> torch.optim.AdamW:
    """AdamW over the trained key path: the projection at ``lr``, the key mix at ``lr_scalars``
    and tau at ``lr_tau`` (``lr_scalars`` when negative). At lr 3e-3 the mix moved ~lr per step
    and was still rising when validation stopped improving; at 3e-2 for both, L1 at h4 pushed tau
    past the validation optimum (docs/TRAINING.md), hence tau's own rate."""
    named = dict(model.named_parameters())
    tau = "correspondence.tau_logit"
    scalars = [named[n] for n in SCALAR_PARAMS if n in named and n.startswith(TRAINED) and n != tau]
    others = [p for n, p in named.items() if n.startswith(TRAINED) and n not in SCALAR_PARAMS]
    lr_tau = cfg.lr_scalars if cfg.lr_tau < 0 else cfg.lr_tau
    return torch.optim.AdamW([{"params": others, "lr": cfg.lr},
                              {"params": scalars, "lr": cfg.lr_scalars, "weight_decay": 0.0},
                              {"params": [named[tau]], "lr": lr_tau, "weight_decay": 0.0}],
                             betas=(0.9, 0.999), weight_decay=1e-4)


class MatchingTrainer:
    def __init__(self, cfg: MatchingConfig) -> None:
        if not cfg.out:
            raise RefcolorError("no run folder: set out")
        torch.set_num_threads(cfg.threads)
        flush_denormals()
        torch.manual_seed(cfg.seed)
        self.cfg, self.out = cfg, Path(cfg.out)
        self.size = (cfg.height, cfg.width)
        mcfg = get_config(cfg.preset)
        if not (mcfg.key_mix and mcfg.key_proj_hidden and mcfg.learn_tau):
            raise RefcolorError(f"preset {cfg.preset} has no learned matching key (key_mix, key_proj_hidden, learn_tau)")
        self.model = build_model(mcfg).eval()
        load_init_weights(self.model, cfg.init_from, cfg.preset)
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith(TRAINED))
        self.opt = matching_optimizer(self.model, cfg)
        self._prepare_data()

    def _prepare_data(self) -> None:
        cfg = self.cfg
        # the same choice as the full-network stage's validation (sources.choose_holdout), so that
        # neither stage trains on the other's held-out sequences; stills give no pairs here
        disc = discover(list(cfg.data), min_frames=cfg.gap_min + 1, holdout=(cfg.val_count, cfg.val_min_frames, cfg.val_max_frames))
        held = disc.held_out
        held_names = {s.name for s in held}
        videos = held + [s for s in disc.sequences if s.kind != "still"]
        print(f"matching stage: validation on {', '.join(f'{s.name} ({s.num_frames})' for s in held)}", flush=True)
        cache = Path(cfg.cache) if cfg.cache else self.out / "cache"
        self.out.mkdir(parents=True, exist_ok=True)  # also when the cache lives elsewhere
        t0 = time.perf_counter()
        self.train_files, self.val_files = [], []
        from tqdm import tqdm

        for seq in tqdm(videos, desc="cache taps", unit="seq"):
            if seq.name in held_names:
                idx = list(range(0, min(seq.num_frames, cfg.val_max_frames), cfg.val_stride))
                self.val_files.append((seq.name, build_cache(self.model, seq, idx, self.size, cache, keep_rgb=True)))
            else:
                idx = list(range(0, min(seq.num_frames, cfg.max_frames), cfg.frame_stride))
                if len(idx) >= 2:
                    self.train_files.append((seq.name, build_cache(self.model, seq, idx, self.size, cache, keep_rgb=False)))
        print(f"cache ready in {time.perf_counter() - t0:.0f} s: {len(self.train_files)} training, "
              f"{len(self.val_files)} validation sequences", flush=True)
        self.train = [load_file(str(p)) for _, p in self.train_files]
        self.weights = np.array([len(t["raw"]) for t in self.train], dtype=float)
        self.weights /= self.weights.sum()

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        cfg = self.cfg
        raws, heads, abs_, idx = [], [], [], []
        for _ in range(cfg.pairs):
            seq = self.train[int(rng.choice(len(self.train), p=self.weights))]
            r, t = sample_pair(rng, len(seq["raw"]), cfg.frame_stride, cfg.gap_min)
            raws += [seq["raw"][r], seq["raw"][t]]
            heads += [seq["head1"][r], seq["head1"][t]]
            abs_ += [seq["ab4"][r], seq["ab4"][t]]
        raw, head1, ab4 = torch.stack(raws), torch.stack(heads), torch.stack(abs_)
        p = ab4.shape[-2] * ab4.shape[-1]
        pick = torch.stack([torch.from_numpy(rng.choice(p, size=min(cfg.targets, p), replace=False)) for _ in range(cfg.pairs)])
        return raw, head1, ab4, pick

    def loss(self, raw, head1, ab4, pick) -> torch.Tensor:
        keys = matching_keys(self.model, raw, head1)  # 2P,K,P (ref, target alternating)
        k_ref, k_tgt = keys[0::2], keys[1::2]
        q = torch.gather(k_tgt, 2, pick[:, None].expand(-1, k_tgt.shape[1], -1))
        v = ab4[0::2].flatten(2)
        want = torch.gather(ab4[1::2].flatten(2), 2, pick[:, None].expand(-1, 2, -1))
        warped, _ = nonlocal_warp(q[:, None], k_ref, v, self.model.correspondence.temperature())
        return (warped[:, 0] - want).abs().mean()

    @torch.no_grad()
    def validate(self) -> dict:
        """Reference = each held-out sequence's first frame; W1 up-sampled with the true L, as the
        ``warp`` model colors: PSNR (RGB uint8) and colorfulness, mean over frames then sequences."""
        scores = []
        for _, path in self.val_files:
            t = load_file(str(path))
            keys = matching_keys(self.model, t["raw"], t["head1"])
            v = t["ab4"][:1].flatten(2)
            warped, _ = nonlocal_warp(keys[:, None].transpose(0, 1), keys[:1], v, self.model.correspondence.temperature())
            ab = F.interpolate(warped[0].view(-1, 2, *t["ab4"].shape[-2:]), size=self.size, mode="bilinear", align_corners=False)
            rgb = t["rgb"]
            lab = normalize_lab(rgb_to_lab(rgb.permute(0, 3, 1, 2).float() / 255))
            out = lab_to_rgb(denormalize_lab(torch.cat([lab[:, :1], ab], 1))).clamp(0, 1)
            out = (out * 255).round().byte().permute(0, 2, 3, 1).numpy()
            frames = range(1, len(rgb))  # frame 0 is the reference
            scores.append((np.mean([psnr(out[i], rgb[i].numpy()) for i in frames]),
                           np.mean([colorfulness(out[i]) for i in frames])))
        cs = self.model.correspondence
        return {"psnr": float(np.mean([s[0] for s in scores])), "color": float(np.mean([s[1] for s in scores])),
                "tau": float(cs.temperature()), "mix": float(torch.sigmoid(cs.key_mix_logit))}

    def fit(self) -> dict:
        from tqdm import tqdm

        cfg, rng = self.cfg, np.random.default_rng(self.cfg.seed)
        base = self.validate()
        print(f"step 0: val PSNR {base['psnr']:.3f} colorfulness {base['color']:.2f} tau {base['tau']:.4f} m {base['mix']:.3f}", flush=True)
        append_csv(self.out / "matching-val.csv", {"step": 0, **base})
        best = base["psnr"]
        self._save(0, base)
        bar = tqdm(range(1, cfg.steps + 1), desc="matching", unit="step")
        for step in bar:
            t0 = time.perf_counter()
            loss = self.loss(*self.batch(rng))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            append_csv(self.out / "matching-log.csv", {"step": step, "loss": round(float(loss), 5), "time_s": round(time.perf_counter() - t0, 3),
                                                      "pairs_per_s": round(cfg.pairs / (time.perf_counter() - t0), 3)})
            bar.set_postfix_str(f"L1 {float(loss):.4f}")
            if step % cfg.val_every == 0 or step == cfg.steps:
                val = self.validate()
                append_csv(self.out / "matching-val.csv", {"step": step, **val})
                bar.write(f"step {step}: val PSNR {val['psnr']:.3f} colorfulness {val['color']:.2f} tau {val['tau']:.4f} m {val['mix']:.3f}")
                if val["psnr"] > best:
                    best = val["psnr"]
                    self._save(step, val)
        return {"start": base, "best_psnr": best}

    def _save(self, step: int, val: dict) -> None:
        save_model(self.model, self.out / "matching-best.safetensors",
                   metadata={"step": str(step), "val_psnr": f"{val['psnr']:.4f}", "stage": "matching"})
