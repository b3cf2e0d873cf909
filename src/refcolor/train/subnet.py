"""Stage 3 of training: the colorization subnet alone, on traces of the frozen network.

Stages 1-2 leave the subnet where the packaged ``lite`` left it: its output equals head 1's warp
W1 within 0.4 ab units, so it neither adds quality nor keeps colors (docs/MODEL-HISTORY.md). The subnet is
a leaf of the method: nothing downstream reads its output (the linkage memory stores ``ho`` of the
correspondence subnet, propagation lends W1). So with everything else frozen, its exact inputs
under evaluation's protocol can be recorded once and the subnet trained on them alone:

    trace: gray frames -> Colorizer (reference = frame 0, blocks of N, memory carried) -> for
           every block, the subnet's inputs x = [W1 S1 W2 S2 l lab_ref] (fp16) and tokens ho
    train: subnet(x, ho) -> ab -> up-sampled to the working size, as ``run_block`` does
           loss = L1(ab, ab_gt) + w_color * relu(c * C(rgb_gt) - C(rgb)) / 100  (+ w_chroma * chroma_loss)
                  (+ w_adv * hinge_g(D(l_gt, ab)), D a PatchDiscriminator stepped after each step)

C is Hasler-Suesstrunk colorfulness per frame (eval/metrics.py), made differentiable here: the L1
median of an ambiguous match is grayish, and a per-frame colorfulness term lets the subnet choose
where restoring saturation costs least. It is one-sided (c = ``color_target``): a frame at least
c times as colorful as its truth costs nothing, so the term stops washing-out without pushing
every frame to the truth's saturation (measured: a symmetric term overshot to 104 % for -0.9 dB). Validation replays the held-out traces through the output
path of ``Colorizer`` (``to_rgb_uint8``), so its PSNR / colorfulness are evaluation's own figures
on those frames. The hold-out is the same choice as stages 1 and 2 (``sources.choose_holdout``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoint import read_checkpoint, save_model
from ..color import AB_SCALE, gray_from_rgb, normalize_lab, rgb_to_lab, uint8_to_tensor
from ..convert import luminance, to_rgb_uint8
from ..cpu_math import flush_denormals
from ..errors import RefcolorError
from ..eval.metrics import colorfulness, psnr
from ..models.network import RefColorNet, build_model
from .discriminator import PatchDiscriminator
from .losses import chroma_loss, hinge_d_loss, hinge_g_loss, lab_to_rgb_norm
from .runtime import append_csv
from .sources import Sequence, discover, to_canonical

TRAINED = ("colorization.",)


@dataclass
class SubnetConfig:
    init_from: str  # the whole network whose frozen parts make the traces (e.g. stage 1's file)
    data: list = field(default_factory=list)  # training roots (see train/sources.py)
    out: str = ""
    traces: str = ""  # trace folder (default OUT/traces); runs that differ only in training can share one
    propagate_bias: float = -2.0  # < -1: the checkpoint's own; else set (ModelConfig.propagate_bias)
    height: int = 216
    width: int = 384
    max_frames: int = 100  # per sequence, from frame 0 (evaluation's length)
    steps: int = 1500
    blocks: int = 2  # blocks of N frames per step
    lr: float = 2e-4
    w_color: float = 0.0  # per-frame colorfulness term (see the module docstring)
    color_target: float = 1.0  # the term is a hinge: only colorfulness below this share of the frame's truth costs
    w_chroma: float = 0.0  # losses.chroma_loss (hinge on per-pixel chroma)
    w_adv: float = 0.0  # paper Eq. 11: hinge generator term of a PatchDiscriminator on (l_truth, ab)
    disc_channels: int = 32
    lr_disc: float = 1e-3
    val_count: int = 6
    val_min_frames: int = 60
    val_max_frames: int = 100
    val_every: int = 100
    color_floor: float = 0.0  # select "psnr": best = highest PSNR among validations at >= this share of the truth's color
    select: str = "psnr"  # or "color": best = most colorful validation whose PSNR is at least the start's
    seed: int = 0
    threads: int = 1


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def load_frames(seq: Sequence, size: tuple[int, int], count: int) -> np.ndarray:
    """The first ``count`` frames of ``seq`` at the working size (cover, then centre crop): T,h,w,3."""
    frames = seq.read(list(range(min(count, seq.num_frames))), size)
    h, w = size
    out = []
    for i in sorted(frames):
        rgb = to_canonical(frames[i], size)
        top, left = (rgb.shape[0] - h) // 2, (rgb.shape[1] - w) // 2
        out.append(rgb[top : top + h, left : left + w])
    return np.ascontiguousarray(np.stack(out))


@torch.no_grad()
def trace_sequence(model: RefColorNet, rgb: np.ndarray, block: int, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """Runs ``model`` over T,h,w,3 ground-truth frames as evaluation does and records, per frame,
    the colorization subnet's inputs: x T,C_in,hc,wc and ho T,th*tw,D (in ``dtype``), plus the gray
    input (T,h,w,3 uint8), the truth ``rgb`` and what the whole network output (``out``)."""
    from ..inference import Colorizer

    colorizer = Colorizer(model, device="cpu", size=tuple(rgb.shape[1:3]), block_size=block)
    xs, hos = [], []

    def record(_module, args, _output):
        x, ho, grid = args
        n, th, tw = grid
        xs.append(x.to(dtype).clone())
        hos.append(ho.reshape(n, th * tw, -1).to(dtype).clone())

    gray = gray_from_rgb(rgb)
    colorizer.set_reference(rgb[0])
    handle = model.colorization.register_forward_hook(record)
    try:
        out = np.concatenate([colorizer.step(gray[i : i + block]) for i in range(0, len(gray), block)])
    finally:
        handle.remove()
    return {"x": torch.cat(xs), "ho": torch.cat(hos), "gray": torch.from_numpy(gray),
            "rgb": torch.from_numpy(rgb), "out": torch.from_numpy(out)}


def build_trace(model: RefColorNet, seq: Sequence, size, count: int, block: int, folder: Path) -> Path:
    """Trace file of ``seq`` (written once, atomically; reused after)."""
    path = folder / f"{_safe(seq.name)}-{min(count, seq.num_frames)}-n{block}.safetensors"
    if not path.is_file():
        tensors = trace_sequence(model, load_frames(seq, size, count), block)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        tmp.replace(path)
    return path


def blocks_of(trace: dict[str, torch.Tensor], block: int) -> list[tuple[int, int]]:
    """(first, last + 1) of each block the trace was made with."""
    t = len(trace["x"])
    return [(s, min(s + block, t)) for s in range(0, t, block)]


def subnet_ab(model: RefColorNet, x: torch.Tensor, ho: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One traced block: x n,C,hc,wc; ho n,th*tw,D -> normalised ab n,2,h,w, as ``run_block``."""
    n = x.shape[0]
    h8, w8 = size[0] // 8, size[1] // 8
    grid = model.correspondence.token_grid(n, h8, w8)
    ab = model.colorization(x.float(), ho.float().reshape(1, -1, ho.shape[-1]), grid)
    return F.interpolate(ab, size=size, mode="bilinear", align_corners=False) if ab.shape[-2:] != size else ab


def soft_colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler-Suesstrunk colorfulness of N,3,H,W RGB in [0, 1], per image (0-255 units), differentiable."""
    r, g, b = (rgb[:, c] * 255.0 for c in range(3))
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    std = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False) + 1e-6).sqrt()
    mean = (rg.mean(1).square() + yb.mean(1).square() + 1e-6).sqrt()
    return std + 0.3 * mean


def block_loss(model: RefColorNet, trace: dict[str, torch.Tensor], first: int, last: int, cfg: SubnetConfig,
               disc: torch.nn.Module | None = None, pairs: list | None = None) -> dict:
    """Loss terms on frames [first, last) of a trace. With ``disc`` (and ``w_adv``), the adversarial
    term; the (real, fake) normalised Lab pair is appended to ``pairs`` for the discriminator step."""
    size = (cfg.height, cfg.width)
    ab = subnet_ab(model, trace["x"][first:last], trace["ho"][first:last], size)
    lab_gt = normalize_lab(rgb_to_lab(uint8_to_tensor(trace["rgb"][first:last].numpy())))
    terms = {"l1": (ab - lab_gt[:, 1:]).abs().mean()}
    if disc is not None and cfg.w_adv > 0:
        # Real and fake share the truth's l: the discriminator judges the colors, not the gray
        # conversion (inference's l comes from the gray input, a shortcut it must not learn).
        fake = torch.cat([lab_gt[:, :1], ab], 1)
        disc.requires_grad_(False)
        terms["adv"] = hinge_g_loss(disc(fake))
        disc.requires_grad_(True)
        if pairs is not None:
            pairs.append((lab_gt, fake.detach()))
    if cfg.w_color > 0:
        gray_l = normalize_lab(rgb_to_lab(uint8_to_tensor(trace["gray"][first:last].numpy())))[:, :1]
        rgb = lab_to_rgb_norm(gray_l, ab).clamp(0, 1)
        truth = soft_colorfulness(lab_to_rgb_norm(lab_gt[:, :1], lab_gt[:, 1:]))
        terms["color"] = F.relu(cfg.color_target * truth - soft_colorfulness(rgb)).mean() / 100.0
    if cfg.w_chroma > 0:
        terms["chroma"] = chroma_loss(ab, lab_gt[:, 1:])
    terms["loss"] = (terms["l1"] + cfg.w_color * terms.get("color", 0.0) + cfg.w_chroma * terms.get("chroma", 0.0)
                     + cfg.w_adv * terms.get("adv", 0.0))
    return terms


@torch.no_grad()
def score_trace(model: RefColorNet, trace: dict[str, torch.Tensor], block: int, size) -> list[tuple[float, float]]:
    """(PSNR, colorfulness) per frame of the subnet's output through ``Colorizer``'s output path."""
    scores = []
    for first, last in blocks_of(trace, block):
        ab = subnet_ab(model, trace["x"][first:last], trace["ho"][first:last], size) * AB_SCALE
        lum = luminance(trace["gray"][first:last].numpy(), torch.device("cpu"))
        rgb = to_rgb_uint8(lum, ab)
        scores += [(psnr(p, g), colorfulness(p)) for p, g in zip(rgb, trace["rgb"][first:last].numpy())]
    return scores


def selection_rank(val: dict, start: dict, select: str, color_floor: float = 0.0) -> tuple:
    """Sort key of a validation (higher is better), decided before any evaluation on davis16-dev.

    ``psnr``: validations at >= ``color_floor`` of the truth's colorfulness first, by PSNR; below
    the floor, by colorfulness. ``color``: validations whose PSNR is at least the start's first,
    by colorfulness; below it, by PSNR (a color term that costs PSNR is not chosen for its color).
    """
    if select == "psnr":
        ok = val["color_share"] >= color_floor
        return (ok, val["psnr"] if ok else val["color_share"])
    if select == "color":
        ok = val["psnr"] >= start["psnr"]
        return (ok, val["color_share"] if ok else val["psnr"])
    raise RefcolorError(f"unknown select {select!r}; use psnr or color")


class SubnetTrainer:
    def __init__(self, cfg: SubnetConfig) -> None:
        if not cfg.out:
            raise RefcolorError("no run folder: set out")
        selection_rank({"psnr": 0.0, "color_share": 0.0}, {"psnr": 0.0}, cfg.select)  # a bad name fails now
        torch.set_num_threads(cfg.threads)
        flush_denormals()
        torch.manual_seed(cfg.seed)
        self.cfg, self.out, self.size = cfg, Path(cfg.out), (cfg.height, cfg.width)
        self.out.mkdir(parents=True, exist_ok=True)  # also when the traces live elsewhere (--traces)
        mcfg, tensors, _ = read_checkpoint(cfg.init_from)  # the model keeps its own config
        mcfg = mcfg.replace(pretrained=False, **({} if cfg.propagate_bias < -1 else {"propagate_bias": cfg.propagate_bias}))
        self.model = build_model(mcfg).eval()
        self.model.load_state_dict(tensors)
        self.block = mcfg.block_size
        for name, p in self.model.named_parameters():
            p.requires_grad_(name.startswith(TRAINED))
        trained = [p for p in self.model.parameters() if p.requires_grad]
        if not trained:
            raise RefcolorError(f"{cfg.init_from}: this model has no colorization subnet to train")
        self.opt = torch.optim.AdamW(trained, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=1e-4)
        self.disc = self.opt_d = None
        if cfg.w_adv > 0:
            self.disc = PatchDiscriminator(cfg.disc_channels)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.lr_disc, betas=(0.5, 0.999), weight_decay=1e-4)
        self._prepare_data()

    def _prepare_data(self) -> None:
        from tqdm import tqdm

        cfg = self.cfg
        disc = discover(list(cfg.data), min_frames=self.block + 1, holdout=(cfg.val_count, cfg.val_min_frames, cfg.val_max_frames))
        held = {s.name for s in disc.held_out}
        videos = disc.held_out + [s for s in disc.sequences if s.kind != "still"]
        print(f"subnet stage: validation on {', '.join(f'{s.name} ({s.num_frames})' for s in disc.held_out)}", flush=True)
        folder, t0 = Path(cfg.traces) if cfg.traces else self.out / "traces", time.perf_counter()
        self.train, self.val = [], []
        for seq in tqdm(videos, desc="trace", unit="seq"):
            count = cfg.val_max_frames if seq.name in held else cfg.max_frames
            trace = load_file(str(build_trace(self.model, seq, self.size, count, self.block, folder)))
            (self.val if seq.name in held else self.train).append(trace)
        frames = sum(len(t["x"]) for t in self.train)
        print(f"traces ready in {time.perf_counter() - t0:.0f} s: {len(self.train)} training sequences "
              f"({frames} frames), {len(self.val)} validation", flush=True)
        if not self.train or not self.val:
            raise RefcolorError("the subnet stage needs training and held-out video sequences")
        self.train_blocks = [(i, a, b) for i, t in enumerate(self.train) for a, b in blocks_of(t, self.block)]

    def discriminator_step(self, pairs: list) -> float:
        """One hinge step of the discriminator on the step's (real, detached fake) frames."""
        real = torch.cat([r for r, _ in pairs])
        logits = self.disc(torch.cat([real, torch.cat([f for _, f in pairs])]))
        d_loss = hinge_d_loss(logits[: len(real)], logits[len(real) :])
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return float(d_loss.detach())

    def validate(self) -> dict:
        self.model.eval()
        scores = [s for t in self.val for s in score_trace(self.model, t, self.block, self.size)]
        truth = float(np.mean([colorfulness(f) for t in self.val for f in t["rgb"].numpy()]))
        color = float(np.mean([s[1] for s in scores]))
        return {"psnr": float(np.mean([s[0] for s in scores])), "color": color, "color_share": color / truth}

    def fit(self) -> dict:
        from tqdm import tqdm

        cfg, rng = self.cfg, np.random.default_rng(self.cfg.seed)
        base = self.validate()
        print(f"step 0: val PSNR {base['psnr']:.3f} colorfulness {base['color']:.2f} ({base['color_share']:.1%} of truth)", flush=True)
        append_csv(self.out / "subnet-val.csv", {"step": 0, **base})
        self.start = base  # the "color" selection compares PSNR with the start's
        best = self._keep(0, base, None)
        bar = tqdm(range(1, cfg.steps + 1), desc="subnet", unit="step")
        for step in bar:
            t0 = time.perf_counter()
            self.model.train()
            picks = rng.choice(len(self.train_blocks), size=cfg.blocks, replace=False)
            pairs: list = []
            terms = [block_loss(self.model, self.train[i], a, b, cfg, self.disc, pairs) for i, a, b in (self.train_blocks[p] for p in picks)]
            loss = sum(t["loss"] for t in terms) / len(terms)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            row = {k: round(float(sum(float(t[k]) for t in terms) / len(terms)), 5) for k in terms[0]}
            if pairs:
                row["d_loss"] = round(self.discriminator_step(pairs), 5)
            append_csv(self.out / "subnet-log.csv", {"step": step, **row, "time_s": round(time.perf_counter() - t0, 3)})
            bar.set_postfix_str(f"loss {row['loss']:.4f}")
            if step % cfg.val_every == 0 or step == cfg.steps:
                val = self.validate()
                append_csv(self.out / "subnet-val.csv", {"step": step, **val})
                bar.write(f"step {step}: val PSNR {val['psnr']:.3f} colorfulness {val['color']:.2f} ({val['color_share']:.1%} of truth)")
                best = self._keep(step, val, best)
        return {"start": base, "best": best}

    def _keep(self, step: int, val: dict, best: dict | None) -> dict:
        """Saves the model when ``val`` ranks above ``best`` (``selection_rank``)."""
        rank = lambda v: selection_rank(v, self.start, self.cfg.select, self.cfg.color_floor)  # noqa: E731
        if best is None or rank(val) > rank(best):
            save_model(self.model, self.out / "subnet-best.safetensors",
                       metadata={"step": str(step), "val_psnr": f"{val['psnr']:.4f}", "val_color": f"{val['color']:.3f}", "stage": "subnet"})
            return {"step": step, **val}
        return best
