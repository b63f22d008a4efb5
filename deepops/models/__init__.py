"""Networks built from deepops' layers: a LeNet-5-style and a scaled-down AlexNet-style classifier.

Every convolution, pooling and activation is a ``deepops.nn`` layer (so runs through ``torch.ops.deepops``);
``torch.nn.Linear`` and ``torch.nn.Dropout`` are PyTorch's own.  Each network is split the classic way into
``features`` (the convolutional part) and ``classifier`` (flatten + fully connected head), which is what
transfer learning (freeze ``features``, retrain ``classifier``) and :func:`features` (learned features for classical
learners such as an SVM) need.

The identical network on PyTorch's layers -- the reference the tests and benchmarks compare against, never a
fallback -- is ``deepops.nn.convert(model, to="torch")`` (same modules, parameter names and values);
``build(..., impl="torch")`` returns it for the command line's ``--impl torch``.

The cell detector is :mod:`deepops.models.detector`, the DCGAN :mod:`deepops.models.gan`.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import nn as dnn

__all__ = ["LeNet5", "AlexNetSmall", "build", "features", "MODELS"]


def _check(in_channels: int, num_classes: int, image_size: int, smallest: int, name: str) -> None:
    for arg, v, lo in (("in_channels", in_channels, 1), ("num_classes", num_classes, 2), ("image_size", image_size, smallest)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"deepops.models.{name}: '{arg}' must be an integer >= {lo}, got {v!r}")


class LeNet5(nn.Module):
    """LeNet-5 in spirit (LeCun et al. 1998), with ReLU and max pooling as in modern teaching versions:

    conv 5x5 (6) - ReLU - max pool 2 - conv 5x5 (16) - ReLU - max pool 2 - fc 120 - ReLU - fc 84 - ReLU - fc classes.

    The convolutions are zero-padded by 2 ("same") so that small inputs work: the 8x8 digits give 16x2x2 features
    and a 32x32 image 16x8x8 (the original, unpadded, gives 16x5x5 on 32x32).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8):
        super().__init__()
        _check(in_channels, num_classes, image_size, 4, "LeNet5")
        Conv, Pool, ReLU = dnn.Conv2d, dnn.MaxPool2d, dnn.ReLU
        self.features = nn.Sequential(
            Conv(in_channels, 6, 5, padding=2),
            ReLU(),
            Pool(2),
            Conv(6, 16, 5, padding=2),
            ReLU(),
            Pool(2),
        )
        s = image_size // 2 // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * s * s, 120),
            ReLU(),
            nn.Linear(120, 84),
            ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetSmall(nn.Module):
    """AlexNet's design (Krizhevsky et al. 2012) scaled down for small images: five convolutions, overlapping max
    pooling (3x3 windows, stride 2), ReLU after every convolution and dropout in the fully connected head.

    conv 5x5 (32) - pool - conv 3x3 (64) - pool - conv 3x3 (96) - conv 3x3 (96) - conv 3x3 (64) - pool -
    dropout - fc 256 - dropout - fc 256 - fc classes.  The pools are padded by 1, so 8x8 digits shrink 8-4-2-1 and
    32x32 images 32-16-8-4.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, dropout: float = 0.5):
        super().__init__()
        _check(in_channels, num_classes, image_size, 2, "AlexNetSmall")
        Conv, Pool, ReLU = dnn.Conv2d, dnn.MaxPool2d, dnn.ReLU
        self.features = nn.Sequential(
            Conv(in_channels, 32, 5, padding=2),
            ReLU(),
            Pool(3, 2, padding=1),
            Conv(32, 64, 3, padding=1),
            ReLU(),
            Pool(3, 2, padding=1),
            Conv(64, 96, 3, padding=1),
            ReLU(),
            Conv(96, 96, 3, padding=1),
            ReLU(),
            Conv(96, 64, 3, padding=1),
            ReLU(),
            Pool(3, 2, padding=1),
        )
        s = image_size
        for _ in range(3):
            s = (s + 2 - 3) // 2 + 1
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(64 * s * s, 256),
            ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, 256),
            ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS = {"lenet": LeNet5, "alexnet": AlexNetSmall}


def build(name: str, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, impl: str = "deepops") -> nn.Module:
    """A model by its command-line name (``lenet`` or ``alexnet``); ``impl="torch"``: its PyTorch twin, made by
    ``deepops.nn.convert(model, to="torch")``."""
    if name not in MODELS:
        raise ValueError(f"deepops.models.build: 'name' must be one of {sorted(MODELS)}, got {name!r}")
    if impl not in ("deepops", "torch"):
        raise ValueError(f"deepops.models.build: 'impl' must be 'deepops' or 'torch', got {impl!r}")
    model = MODELS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    return dnn.convert(model, inplace=True, to="torch") if impl == "torch" else model


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, layer: str = "penultimate") -> torch.Tensor:
    """Learned features of ``x`` (N, C, H, W) as an (N, D) tensor, in evaluation mode (no dropout), without grad.

    ``layer="penultimate"``: the input of the last linear layer (the deep features the head classifies);
    ``layer="conv"``: the flattened output of the convolutional part.
    """
    from ..train.common import unwrap

    m = unwrap(model)
    if not (hasattr(m, "features") and hasattr(m, "classifier")):
        raise TypeError("deepops.models.features: 'model' must have .features and .classifier parts (LeNet5, AlexNetSmall)")
    if layer not in ("penultimate", "conv"):
        raise ValueError(f"deepops.models.features: 'layer' must be 'penultimate' or 'conv', got {layer!r}")
    was_training = m.training
    m.eval()
    try:
        f = torch.flatten(m.features(x), 1)
        if layer == "penultimate":
            f = m.classifier[1:-1](f)  # skip Flatten (already flat), stop before the last Linear
        return f
    finally:
        m.train(was_training)
