"""An offline score for generated digits: a Fréchet distance in the feature space of our own digits classifier,
the classifier's confidence on the samples, and the spread of the classes it assigns them.

Strategy.  The FID needs the Inception network's weights, which cannot be downloaded here; instead a small CNN
(``DigitScorer``: three 3x3 convolutions, the last two strided, then a 64-unit hidden layer and 10 outputs) is trained
on the real digits in a few seconds, and

* ``frechet``: the Fréchet distance (``deepops.metrics.frechet``) between Gaussians fitted to the 64-d hidden-layer
  features of real images and of generated images -- an FID-like measure in *this* classifier's feature space, so
  its values are comparable only with other values from the same scorer (same seed), never with published FIDs;
* ``confidence``: the mean, over samples, of the classifier's top softmax probability (blurry or
  in-between images get low confidence);
* ``classes`` / ``class_counts``: how many of the ten classes the samples are assigned to, and how often (mode
  collapse shows as few classes).

The scorer is built from ``deepops.nn`` layers like everything else (``deepops.nn.convert(scorer, to="torch")`` for
the reference network).  It works on 16x16 inputs: images of other sizes are resized (area averaging) first, so one scorer serves
generators of every size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import nn as L
from ..train.fit import fit
from .frechet import frechet_distance, gaussian_stats

SCORER_SIDE = 16  # the scorer's input side; other sizes are resized to it
FEATURES = 64  # the width of the feature layer the Fréchet distance is computed on
N_CLASSES = 10


class DigitScorer(nn.Module):
    """A small digits classifier whose hidden layer is the feature space of the Fréchet distance."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(
            L.Conv2d(channels, 32, 3, 1, 1), L.ReLU(),  # 16x16
            L.Conv2d(32, 32, 3, 2, 1), L.ReLU(),  # 8x8
            L.Conv2d(32, 64, 3, 2, 1), L.ReLU(),  # 4x4
            nn.Flatten(), nn.Linear(64 * (SCORER_SIDE // 4) ** 2, FEATURES), L.ReLU(),
        )
        self.head = nn.Linear(FEATURES, N_CLASSES)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"deepops.metrics.gan_score: 'images' must have shape (N, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2:] != (SCORER_SIDE, SCORER_SIDE):
            x = F.interpolate(x, size=(SCORER_SIDE, SCORER_SIDE), mode="area" if x.shape[-1] > SCORER_SIDE else "bilinear")
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._resize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _shift(x: torch.Tensor, gen: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Random translations by up to ``pad`` pixels (the same for a whole batch: cheap and enough for digits)."""
    dy, dx = torch.randint(-pad, pad + 1, (2,), generator=gen).tolist()
    return torch.roll(x, (dy, dx), dims=(2, 3))


def train_scorer(
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> tuple[DigitScorer, float]:
    """Train a :class:`DigitScorer` on ``images`` in [-1, 1] (N, C, H, W) with integer ``labels``: Adam, the learning
    rate falling along a cosine to 0 over the steps.

    A seeded ``val_fraction`` of the images is held out; returns the model (in eval mode) and its accuracy there.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = images.float()
    x = F.interpolate(x, size=(SCORER_SIDE, SCORER_SIDE), mode="area") if x.shape[-1] > SCORER_SIDE else x
    y = labels.long()
    perm = torch.randperm(len(x), generator=gen)
    n_val = int(len(x) * val_fraction)
    val, tr = perm[:n_val], perm[n_val:]
    model = DigitScorer(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    fit(model, x[tr], y[tr], opt, epochs=epochs, batch=batch_size, lr=lr, gen=gen, augment=lambda b: _shift(b, gen))
    acc = 1.0
    if n_val:
        with torch.no_grad():
            acc = (model(x[val]).argmax(1) == y[val]).float().mean().item()
    return model, acc


@torch.no_grad()
def scorer_outputs(scorer: DigitScorer, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, softmax probabilities) of ``images``, computed in batches."""
    scorer.eval()
    feats, probs = [], []
    dev = next(scorer.parameters()).device
    for i in range(0, len(images), batch_size):
        f = scorer.features(images[i : i + batch_size].to(dev).float())
        feats.append(f.cpu())
        probs.append(torch.softmax(scorer.head(f), 1).cpu())
    return torch.cat(feats), torch.cat(probs)


@torch.no_grad()
def generate(generator: nn.Module, n: int, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``n`` images from ``generator`` (in eval mode) for noise drawn from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    dev = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = []
    for i in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - i), generator.z_dim, generator=gen)
        out.append(generator(z.to(dev)).cpu())
    generator.train(was_training)
    return torch.cat(out)


class GanScorer:
    """Scores sets of images (or a generator) against the real images' feature statistics."""

    def __init__(self, scorer: DigitScorer, real_images: torch.Tensor):
        self.scorer = scorer
        feats, _ = scorer_outputs(scorer, real_images)
        self.real_mu, self.real_sigma = gaussian_stats(feats)
        half = len(feats) // 2
        perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))
        # the distance between two halves of the real set: the floor a perfect generator would reach (at this size)
        self.real_floor = frechet_distance(*gaussian_stats(feats[perm[:half]]), *gaussian_stats(feats[perm[half:]]))

    def score_images(self, images: torch.Tensor) -> dict:
        feats, probs = scorer_outputs(self.scorer, images)
        conf, cls = probs.max(1)
        counts = np.bincount(cls.numpy(), minlength=N_CLASSES)
        return {
            "n": len(images),
            "frechet": frechet_distance(*gaussian_stats(feats), self.real_mu, self.real_sigma),
            "confidence": float(conf.mean()),
            "classes": int((counts > 0).sum()),
            "class_counts": counts.tolist(),
        }

    def score_generator(self, generator: nn.Module, n: int = 1000, seed: int = 0) -> dict:
        return self.score_images(generate(generator, n, seed))


__all__ = ["DigitScorer", "train_scorer", "scorer_outputs", "generate", "GanScorer", "SCORER_SIDE", "FEATURES"]
