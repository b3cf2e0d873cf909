"""Patch discriminator for the adversarial term (paper Eq. 11, after DeepExemplar).

A PatchGAN (Isola et al. 2017) on the normalised Lab image: it sees the luminance with the
chroma, so it judges whether the colors are plausible *for this image*, patch by patch (receptive
field about 70 px at 216x384), not the gray structure, which is the same in real and fake.
Every convolution is spectrally normalised (Miyato et al. 2018), the usual pairing with the hinge
loss of ``losses.hinge_d_loss`` / ``hinge_g_loss``.

Why hinge: with spectral norm it is the standard stable choice (SAGAN, BigGAN); the discriminator
stops being pushed on samples it already classifies with margin 1, so on tiny batches (1-2 clips,
as here) it does not run away and saturate the generator's gradient the way the non-saturating
BCE loss of an over-confident discriminator does, and no sigmoid / log is needed in bf16.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        c = channels
        sn = spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(in_channels, c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(2 * c, 4 * c, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(4 * c, 8 * c, 4, 1, 1)), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(8 * c, 1, 4, 1, 1)),
        )

    def forward(self, lab: Tensor) -> Tensor:
        """lab: N,3,H,W normalised (l in [-1, 1], ab / 110) -> patch logits N,1,h,w."""
        return self.net(lab)
