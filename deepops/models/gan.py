"""A DCGAN (Radford, Metz and Chintala, 2015) whose convolutions and activations run on deepops' ops.

Strategy: the two networks are the textbook DCGAN, sized by the image:

* generator: noise ``z`` (N, z_dim) -> a 4x4 map by a transposed convolution (kernel 4, stride 1, no padding), then
  one strided transposed convolution (kernel 4, stride 2, padding 1) per doubling of the side, halving the channels
  each time, with batch norm and ReLU after each but the last; the last maps to the image channels and ``tanh``
  gives an image in [-1, 1];
* discriminator: the mirror image: strided convolutions (kernel 4, stride 2, padding 1) halve the side and double
  the channels, leaky ReLU (slope 0.2) after each, batch norm after all but the first, down to 4x4; a last 4x4
  convolution gives one logit per image.

A side of ``4 * 2**k`` (16, 32, 64, ...) gives ``k`` strided layers.  The convolutions, transposed convolutions and
activations are ``deepops.nn`` layers, so each is a ``torch.ops.deepops`` call; ``deepops.nn.convert(model,
to="torch")`` makes the identical network (same parameters and ``state_dict`` keys) on PyTorch's layers, which the
benchmarks and tests compare against.  Batch norm and ``tanh`` are PyTorch's.  Weights start as in the DCGAN paper: N(0, 0.02) for
convolutions, N(1, 0.02) for batch-norm scales.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import nn as L

KERNEL = 4  # every (transposed) convolution is 4x4, as in DCGAN
BASE_SIDE = 4  # the generator's first map and the discriminator's last map are 4x4
LEAK = 0.2  # the discriminator's leaky-ReLU slope


def _doublings(image_size: int) -> int:
    k = int(round(math.log2(image_size / BASE_SIDE))) if image_size >= 2 * BASE_SIDE else 0
    if k < 1 or BASE_SIDE * 2**k != image_size:
        raise ValueError(f"deepops.models.gan: 'image_size' must be 4 * 2**k with k >= 1 (8, 16, 32, 64, ...), got {image_size}")
    return k


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"deepops.models.gan: '{name}' must be a positive integer, got {value!r}")


class Generator(nn.Module):
    """Noise (N, z_dim) -> images (N, channels, image_size, image_size) in [-1, 1]."""

    def __init__(self, image_size: int = 32, channels: int = 1, z_dim: int = 64, width: int = 64):
        super().__init__()
        k = _doublings(image_size)
        for name, v in (("channels", channels), ("z_dim", z_dim), ("width", width)):
            _check_positive(name, v)
        self.image_size, self.channels, self.z_dim = image_size, channels, z_dim
        c = width * 2 ** (k - 1)
        mods: list[nn.Module] = [L.ConvTranspose2d(z_dim, c, KERNEL, 1, 0, bias=False), nn.BatchNorm2d(c), L.ReLU()]
        for _ in range(k - 1):
            mods += [L.ConvTranspose2d(c, c // 2, KERNEL, 2, 1, bias=False), nn.BatchNorm2d(c // 2), L.ReLU()]
            c //= 2
        mods += [L.ConvTranspose2d(c, channels, KERNEL, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*mods)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"deepops.models.gan.Generator: 'z' must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Images (N, channels, image_size, image_size) -> one logit per image, shape (N,)."""

    def __init__(self, image_size: int = 32, channels: int = 1, width: int = 64):
        super().__init__()
        k = _doublings(image_size)
        for name, v in (("channels", channels), ("width", width)):
            _check_positive(name, v)
        self.image_size, self.channels = image_size, channels
        c = width
        mods: list[nn.Module] = [L.Conv2d(channels, c, KERNEL, 2, 1, bias=False), L.LeakyReLU(LEAK)]
        for _ in range(k - 1):
            mods += [L.Conv2d(c, c * 2, KERNEL, 2, 1, bias=False), nn.BatchNorm2d(c * 2), L.LeakyReLU(LEAK)]
            c *= 2
        mods += [L.Conv2d(c, 1, KERNEL, 1, 0, bias=False)]
        self.net = nn.Sequential(*mods)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        want = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"deepops.models.gan.Discriminator: 'x' must have shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        return self.net(x).flatten()


class DCGAN(nn.Module):
    """The pair, so that one ``state_dict`` (keys ``generator.*`` and ``discriminator.*``) holds both."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 1,
        z_dim: int = 64,
        g_width: int = 64,
        d_width: int = 64,
    ):
        super().__init__()
        self.generator = Generator(image_size, channels, z_dim, g_width)
        self.discriminator = Discriminator(image_size, channels, d_width)

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) for (transposed) convolutions, N(1, 0.02) and 0 for batch norm."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


__all__ = ["Generator", "Discriminator", "DCGAN", "init_weights"]
