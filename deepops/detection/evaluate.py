"""Evaluation of the cell detector on held-out generated sets, with a JSON report and PNG overlays.

Held-out data: image i of an evaluation set is ``simcep.generate(preset, default_rng([eval_seed, i]))``, a seed
sequence of two numbers; training batches use three-number sequences ``(seed, rank, k)``, so no evaluation image is
ever a training image.  Every decoding mode of ``deepops.detection.decode`` is scored on the same network outputs,
which shows how much over-detection the peak finding and NMS remove.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import simcep
from . import metrics
from .data import normalize, pad_to_stride
from .decode import DEFAULT_IOU, DEFAULT_THRESHOLD, MODES, decode

EVAL_SEED = 20260


@torch.no_grad()
def predict_batch(model, images: Sequence[np.ndarray], device, batch_size: int = 16):
    """Raw network outputs for equally sized images, in batches (normalised here)."""
    outs = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([torch.from_numpy(normalize(im)) for im in images[i : i + batch_size]])[:, None]
        outs.append(model(pad_to_stride(x).to(device)).float().cpu())
    return torch.cat(outs)


def evaluate_preset(
    model,
    preset: str,
    n: int = 200,
    seed: int = EVAL_SEED,
    device="cpu",
    threshold: float = DEFAULT_THRESHOLD,
    iou: float = DEFAULT_IOU,
    modes: Sequence[str] = MODES,
) -> tuple[dict, list, dict]:
    """Metrics per decoding mode on ``n`` held-out images; returns (metrics by mode, samples, predictions by mode)."""
    samples = simcep.generate_set(preset, n, seed)
    model.eval()
    t0 = time.perf_counter()
    out = predict_batch(model, [s.image for s in samples], device)
    infer_s = time.perf_counter() - t0
    res, preds = {}, {}
    for mode in modes:
        dets = [(b.numpy(), s.numpy()) for b, s in decode(out, threshold, iou, mode)]
        res[mode] = metrics.evaluate(dets, [s.boxes for s in samples])
        preds[mode] = dets
    res["inference_s"] = infer_s
    res["images_per_s"] = n / infer_s
    return res, samples, preds


def overlay(image: np.ndarray, pred_boxes: np.ndarray, gt_boxes: np.ndarray | None = None, scale: int = 1):
    """An RGB PIL image: the image (percentile-stretched), ground truth in green, detections in magenta."""
    from PIL import Image, ImageDraw

    g = np.clip(normalize(image), 0, 1) * 255
    rgb = Image.fromarray(np.stack([g] * 3, -1).astype(np.uint8))
    if scale != 1:
        rgb = rgb.resize((rgb.width * scale, rgb.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(rgb)
    for boxes, colour in ((gt_boxes, (0, 255, 0)), (pred_boxes, (255, 0, 255))):
        if boxes is None:
            continue
        for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
            d.rectangle([x1 * scale, y1 * scale, x2 * scale - 1, y2 * scale - 1], outline=colour)
    return rgb


def overlay_strip(samples, dets, path: str | Path, k: int = 3) -> None:
    """The first ``k`` images side by side with their overlays, saved as one PNG."""
    from PIL import Image

    tiles = [overlay(s.image, d[0], s.boxes) for s, d in zip(samples[:k], dets[:k])]
    W = sum(t.width for t in tiles) + 4 * (len(tiles) - 1)
    strip = Image.new("RGB", (W, max(t.height for t in tiles)))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 4
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    strip.quantize(colors=32).save(path, optimize=True)  # a palette keeps the committed PNGs small
