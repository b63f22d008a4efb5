"""A small single-stage CenterNet-style detector for cell nuclei, built from deepops layers.

Strategy: a fully convolutional backbone (3x3 convolutions + ReLU, two 2x2 max-pools, so the output grid has stride
4 pixels) and a dense head that predicts, for every grid cell,

* channel 0: the logit of a centre heatmap ("a nucleus centre falls in this cell"),
* channels 1-2: the sub-cell offset of that centre (x, y), in cells, in [0, 1),
* channels 3-4: log(width / stride), log(height / stride) of the box.

The heatmap is trained with CenterNet's penalty-reduced focal loss against Gaussian splats; offsets and sizes with
L1 at the centre cells (see ``deepops.detection.data``).  Decoding (``deepops.detection.decode``) keeps the local
maxima of the heatmap (a 3x3 max-pool through ``deepops.max_pool2d``), applies a score threshold and removes the
remaining duplicates with ``deepops.nms``.

Every convolution, pooling and activation is a ``deepops.nn`` layer (so runs through ``torch.ops.deepops``); the
same network on PyTorch's kernels, the peer in ``deepops bench``, is ``deepops.nn.convert(model, to="torch")``,
with the same parameter names, so checkpoints load in either.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import nn as L

STRIDE = 4  # output grid stride in pixels (two 2x2 max-pools)
OUT_CHANNELS = 5  # heat logit, offset x, offset y, log w, log h
HEAT_PRIOR = 0.05  # initial foreground probability of the heatmap (bias init, as in CenterNet / RetinaNet)


class CellDetector(nn.Module):
    """CenterNet-style nucleus detector; ``width`` sets the channels (width/2, width, 2*width per stage)."""

    stride = STRIDE

    def __init__(self, width: int = 16, in_channels: int = 1):
        super().__init__()
        w1, w2, w3 = max(width // 2, 1), width, 2 * width

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [L.Conv2d(cin, cout, 3, padding=1), L.ReLU(inplace=True)]

        self.config = {"width": width, "in_channels": in_channels}
        self.backbone = nn.Sequential(
            *conv(in_channels, w1),
            L.MaxPool2d(2),
            *conv(w1, w2),
            *conv(w2, w2),
            L.MaxPool2d(2),
            *conv(w2, w3),
            *conv(w3, w3),
            *conv(w3, w3),
        )
        self.head = nn.Sequential(*conv(w3, w3), L.Conv2d(w3, OUT_CHANNELS, 1))
        with torch.no_grad():
            last = self.head[-1]
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[0] = -math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of 4 -> (B, 5, H / 4, W / 4) raw head outputs."""
        if x.shape[-1] % STRIDE or x.shape[-2] % STRIDE:
            raise ValueError(f"CellDetector: input height and width must be multiples of {STRIDE}, got {tuple(x.shape)}")
        return self.head(self.backbone(x))


def build(config: dict) -> CellDetector:
    """The detector a checkpoint's ``config`` describes (``width``, ``in_channels``)."""
    return CellDetector(width=config.get("width", 16), in_channels=config.get("in_channels", 1))
