"""Learning-rate schedules: the shapes every training loop of deepops is built from, and :func:`set_lr`.

Each is a plain function of the progress (a step or epoch count, or a fraction of the run), so a schedule has no
state of its own: a resumed run computes the same rates from the same counters, and nothing extra is checkpointed.

* :func:`cosine` -- from ``hi`` at ``t = 0`` along half a cosine to ``lo`` at ``t = 1``;
* :func:`warmup` -- a linear ramp from ``peak / steps`` up to ``peak`` over the first ``steps`` steps;
* :func:`linear_tail` -- a factor that is 1 until the last ``fraction`` of the steps, then falls linearly to 0.

Who uses which: the classifier one warm-up epoch at lr / 10, then cosine to lr / 50 over the epochs
(``deepops.train.classifier.lr_at``); the detector a linear warm-up, then cosine to 5 % (``deepops.train.detector``);
the GAN a linear tail (``deepops.train.gan``); the examples' ``fit`` and the GAN score's digits classifier cosine to
0 over their steps.
"""

from __future__ import annotations

import math

import torch


def cosine(t: float, hi: float, lo: float = 0.0) -> float:
    """``hi`` at ``t = 0`` falling along half a cosine to ``lo`` at ``t = 1`` (``t`` is clipped to [0, 1])."""
    t = min(max(t, 0.0), 1.0)
    return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * t))


def warmup(step: int, steps: int, peak: float) -> float:
    """Step ``step`` (from 0) of a linear ramp that reaches ``peak`` at step ``steps - 1``."""
    return peak * (step + 1) / steps


def linear_tail(step: int, total: int, fraction: float) -> float:
    """1 until the last ``fraction`` of ``total`` steps, then falling linearly towards 0 (a factor, not a rate)."""
    n = max(1, int(round(fraction * total)))
    return min(1.0, (total - step) / n)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
