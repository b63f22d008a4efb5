"""Training data for the cell detector: image normalisation, CenterNet targets, on-the-fly batches, the loss.

* ``normalize``: percentile normalisation (1, 99.8), the bioimage convention, so 8- and 16-bit images and any
  exposure look alike to the network; used for training and for ``deepops count``.
* ``encode_targets``: for each ground-truth box, its centre c (pixels) sits in grid cell floor(c / stride); that
  cell gets heat 1, offset c / stride - cell and log size; the heat target elsewhere is the maximum of Gaussian
  splats, sigma growing with the box size, which the focal loss uses to penalise near-misses less.
* ``SyntheticBatches``: an endless iterable of (images, heat, reg, mask) batches drawn from SIMCEP presets, seeded
  per batch index, so a resumed run or a DataLoader worker produces the same stream.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import simcep
from ..models.detector import STRIDE

PERCENTILES = (1.0, 99.8)
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0  # CenterNet's penalty-reduced focal loss
REG_WEIGHT = 1.0


def normalize(image: np.ndarray) -> np.ndarray:
    """Percentile normalisation to float32: the 1st percentile -> 0, the 99.8th -> 1 (not clipped)."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, PERCENTILES)
    return ((img - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def pad_to_stride(x: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """Zero-pad the last two dims (bottom / right) to multiples of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def encode_targets(boxes: np.ndarray, grid: tuple[int, int], stride: int = STRIDE):
    """Targets on a (gh, gw) grid: heat (gh, gw), reg (4, gh, gw) = (off x, off y, log w, log h), mask (gh, gw)."""
    gh, gw = grid
    heat = np.zeros((gh, gw), np.float32)
    reg = np.zeros((4, gh, gw), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    ys, xs = np.arange(gh, dtype=np.float32)[:, None], np.arange(gw, dtype=np.float32)[None, :]
    for x1, y1, x2, y2 in boxes:
        w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        j, i = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sigma = max(0.5, math.sqrt(w * h) / stride / 6)
        g = np.exp(-((xs - j) ** 2 + (ys - i) ** 2) / (2 * sigma**2))
        np.maximum(heat, g, out=heat)
        heat[i, j] = 1.0
        reg[:, i, j] = (cx - j, cy - i, math.log(w / stride), math.log(h / stride))
        mask[i, j] = 1.0
    return heat, reg, mask


def make_batch(samples: Sequence[simcep.Sample], augment: np.random.Generator | None = None):
    """Stack samples into tensors: images (B, 1, H, W), heat (B, gh, gw), reg (B, 4, gh, gw), mask (B, gh, gw)."""
    imgs, heats, regs, masks = [], [], [], []
    for s in samples:
        img, boxes = normalize(s.image), s.boxes.copy()
        H, W = img.shape
        if augment is not None:  # flips keep the ground truth exact
            if augment.random() < 0.5:
                img = img[:, ::-1]
                boxes[:, [0, 2]] = W - boxes[:, [2, 0]]
            if augment.random() < 0.5:
                img = img[::-1]
                boxes[:, [1, 3]] = H - boxes[:, [3, 1]]
        t = pad_to_stride(torch.from_numpy(np.ascontiguousarray(img))[None])
        heat, reg, mask = encode_targets(boxes, (t.shape[-2] // STRIDE, t.shape[-1] // STRIDE))
        imgs.append(t)
        heats.append(torch.from_numpy(heat))
        regs.append(torch.from_numpy(reg))
        masks.append(torch.from_numpy(mask))
    return torch.stack(imgs), torch.stack(heats), torch.stack(regs), torch.stack(masks)


class SyntheticBatches(torch.utils.data.IterableDataset):
    """Endless batches from a mix of SIMCEP presets; batch k uses the seed sequence (seed, rank, k)."""

    def __init__(
        self,
        presets: Sequence[str],
        batch_size: int,
        seed: int,
        rank: int = 0,
        start: int = 0,
        size: int | None = None,
        **overrides,
    ):
        self.params = [simcep.preset(p, **overrides) for p in presets]
        if size:  # smaller training images at the same density: cheaper steps, same nuclei
            self.params = [simcep.resized(p, (size, size)) for p in self.params]
        self.batch_size, self.seed, self.rank, self.start = batch_size, seed, rank, start

    def batch(self, k: int):
        rng = np.random.default_rng([self.seed, self.rank, k])
        samples = [simcep.generate(self.params[rng.integers(len(self.params))], rng) for _ in range(self.batch_size)]
        return make_batch(samples, augment=rng)

    def __iter__(self) -> Iterator:
        info = torch.utils.data.get_worker_info()
        k, step = self.start, 1
        if info is not None:
            k, step = self.start + info.id, info.num_workers
        while True:
            yield self.batch(k)
            k += step


def detector_loss(out: torch.Tensor, heat: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor) -> dict:
    """CenterNet loss: focal loss on the heatmap + L1 on offsets and log sizes at centre cells (per object)."""
    logit = out[:, 0]
    p = torch.sigmoid(logit)
    logp, log1mp = F.logsigmoid(logit), F.logsigmoid(-logit)
    pos = heat.eq(1).float()
    npos = pos.sum().clamp(min=1.0)
    pos_loss = -(pos * (1 - p) ** FOCAL_ALPHA * logp).sum()
    neg_loss = -((1 - pos) * (1 - heat) ** FOCAL_BETA * p**FOCAL_ALPHA * log1mp).sum()
    heat_loss = (pos_loss + neg_loss) / npos
    m = mask[:, None]
    reg_loss = (F.l1_loss(out[:, 1:], reg, reduction="none") * m).sum() / (m.sum() * 4).clamp(min=1.0)
    total = heat_loss + REG_WEIGHT * reg_loss
    return {"loss": total, "heat": heat_loss.detach(), "reg": reg_loss.detach()}
