"""LPIPS (AlexNet, v0.1) and FID (InceptionV3, pytorch-fid) from weight files already on disk.

Neither metric ever downloads: each checks its weight file in the torch hub cache
(``<torch.hub.get_dir()>/checkpoints/<file>``) and, when it or the package is missing, is
``available = False`` with a ``reason`` and answers ``Unavailable(reason)`` (shown as
``n/a (weights not found: <path>)``) instead of a number.

* LPIPS: the ``lpips`` package's linear layers (shipped in the package) on torchvision's
  ImageNet AlexNet ``alexnet-owt-7be5be79.pth``; inputs scaled to [-1, 1].
* FID: ``pytorch-fid``'s TF-ported InceptionV3 ``pt_inception-2015-12-05-6726825d.pth``, pool3
  features (2048-d by default) of images in [0, 1] resized to 299 by the network.
"""
from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from unittest import mock

import numpy as np
import torch

from ..errors import RefcolorError
from ..hub import hub_file, load_weights

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be computed; never a number. ``str`` -> ``n/a (<reason>)``."""

    reason: str

    def __str__(self) -> str:
        return f"n/a ({self.reason})"

    def __format__(self, spec: str) -> str:  # f"{value:.3f}" works for numbers and for this
        return str(self)


def _package_missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def _availability(module: str, package: str, weights: Path) -> str:
    """'' when usable, else the reason."""
    if _package_missing(module):
        return f"package {package} not installed"
    if not weights.is_file():
        return f"weights not found: {weights}"
    return ""


def _to_tensor(images: np.ndarray | Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """N,H,W,3 uint8 (or a sequence of H,W,3 of one size) -> N,3,H,W float in [0, 1]."""
    arr = np.asarray(images) if isinstance(images, np.ndarray) else np.stack([np.asarray(x) for x in images])
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise RefcolorError(f"expected RGB uint8 images N,H,W,3, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(0, 3, 1, 2).float() / 255.0


class LPIPSMetric:
    """``LPIPSMetric()(pred, gt)``: LPIPS-Alex v0.1 distance of two H,W,3 uint8 RGB images."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.weights = hub_file(ALEXNET_FILE)
        self.reason = _availability("lpips", "lpips", self.weights)
        self.available = not self.reason
        self._model = None

    def _build(self):
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore")
            # pnet_rand: the AlexNet trunk is built without weights (no download); it is filled below
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        state = load_weights(self.weights, "AlexNet")
        trunk = {}
        for name, _ in model.net.named_parameters():  # sliceK.<features index>.<weight|bias>
            _, idx, kind = name.split(".")
            key = f"features.{idx}.{kind}"
            if key not in state:
                raise RefcolorError(f"{self.weights} is not torchvision's AlexNet: no {key}")
            trunk[name] = state[key]
        model.net.load_state_dict(trunk)
        return model.eval().to(self.device)

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> float | Unavailable:
        if not self.available:
            return Unavailable(self.reason)
        if self._model is None:
            self._model = self._build()
        a, b = _to_tensor(pred, self.device), _to_tensor(gt, self.device)
        if a.shape != b.shape or a.shape[0] != 1:
            raise RefcolorError(f"LPIPS needs two H,W,3 images of one size, got {tuple(pred.shape)} and {tuple(gt.shape)}")
        with torch.inference_mode():
            return float(self._model(a * 2 - 1, b * 2 - 1).item())


class FIDMetric:
    """Fréchet Inception Distance between the outputs and the real frames seen by ``update``.

    ``update(pred_batch, real_batch)`` takes N,H,W,3 uint8 arrays (or sequences of H,W,3);
    ``compute()`` needs at least 2 images per side. When unavailable, ``update`` does nothing
    and ``compute`` returns ``Unavailable``.
    """

    def __init__(self, device: str | torch.device = "cpu", dims: int = 2048, batch_size: int = 32) -> None:
        self.device, self.dims, self.batch_size = torch.device(device), dims, batch_size
        self.weights = hub_file(FID_INCEPTION_FILE)
        self.reason = _availability("pytorch_fid", "pytorch-fid", self.weights)
        self.available = not self.reason
        self._model = None
        self.reset()

    def reset(self) -> None:
        self._pred: list[np.ndarray] = []
        self._real: list[np.ndarray] = []

    def _build(self):
        from pytorch_fid import inception

        if self.dims not in inception.InceptionV3.BLOCK_INDEX_BY_DIM:
            raise RefcolorError(f"FID dims must be one of {sorted(inception.InceptionV3.BLOCK_INDEX_BY_DIM)}")
        block = inception.InceptionV3.BLOCK_INDEX_BY_DIM[self.dims]
        # pytorch-fid fetches its weights by URL; hand it the checked local file instead
        local = lambda *args, **kwargs: load_weights(self.weights, "FID InceptionV3")  # noqa: E731
        with mock.patch.object(inception, "load_state_dict_from_url", local), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = inception.InceptionV3([block], resize_input=True, normalize_input=True, use_fid_inception=True)
        return model.eval().to(self.device)

    def _features(self, images) -> np.ndarray:
        if not isinstance(images, np.ndarray) and len({np.shape(x) for x in images}) > 1:
            return np.concatenate([self._features(x) for x in images])  # sizes differ: one by one
        x = _to_tensor(images, self.device)
        out = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                f = self._model(x[i:i + self.batch_size])[0]
                if f.shape[2:] != (1, 1):
                    f = torch.nn.functional.adaptive_avg_pool2d(f, (1, 1))
                out.append(f.flatten(1).double().cpu().numpy())
        return np.concatenate(out)

    def update(self, pred_batch, real_batch) -> None:
        if not self.available:
            return
        if self._model is None:
            self._model = self._build()
        self._pred.append(self._features(pred_batch))
        self._real.append(self._features(real_batch))

    def compute(self) -> float | Unavailable:
        if not self.available:
            return Unavailable(self.reason)
        pred = np.concatenate(self._pred) if self._pred else np.zeros((0, self.dims))
        real = np.concatenate(self._real) if self._real else np.zeros((0, self.dims))
        if len(pred) < 2 or len(real) < 2:
            raise RefcolorError(f"FID needs at least 2 images per set, got {len(pred)} and {len(real)}")
        return frechet_distance(pred.mean(axis=0), np.cov(pred, rowvar=False),
                                real.mean(axis=0), np.cov(real, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))``, as pytorch-fid's ``calculate_frechet_distance``.

    Same steps (``eps`` added to both diagonals when the square root is not finite, the real part
    kept when the imaginary diagonal is below 1e-3), without scipy's deprecated ``disp`` argument.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise RefcolorError("FID: the two sets' statistics differ in size")
    with warnings.catch_warnings():  # singular products are expected with few images
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise RefcolorError(f"FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} "
                                "(too few images for the feature size?)")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
