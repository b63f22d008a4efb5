"""Benchmark workloads for NMS and batched NMS.

Inputs are detector-like: random box centres over a 1333 x 800 image (COCO's input size), sizes log-uniform from 8
to 128 pixels, uniform scores, and 80 classes for batched NMS; IoU threshold 0.5.  deepops is compared with the
classic vectorised NumPy NMS (below: keep the best box, drop the rest by IoU with array operations, repeat) on the
CPU, and with torchvision.ops when it is installed.
"""

from __future__ import annotations

import numpy as np
import torch

import deepops

from .core import Workload, register

THRESHOLD = 0.5
NUM_CLASSES = 80


def numpy_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """The classic vectorised NumPy NMS: keep the top box, filter the rest by their IoU with it, repeat."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thr]
    return np.array(keep, dtype=np.int64)


def numpy_batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, thr: float) -> np.ndarray:
    """Batched NMS the usual NumPy way: shift each class by its own offset so classes never overlap."""
    offsets = idxs.astype(boxes.dtype) * (boxes.max() + 1)
    return numpy_nms(boxes + offsets[:, None], scores, thr)


def _maker(n):
    def make(device, dtype, gen):
        c = torch.rand(n, 2, generator=gen) * torch.tensor([1333.0, 800.0])
        wh = torch.exp(torch.rand(n, 2, generator=gen) * np.log(16.0)) * 8  # 8 .. 128 pixels
        boxes = torch.cat([c - wh / 2, c + wh / 2], 1)
        scores = torch.rand(n, generator=gen)
        idxs = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        return boxes.to(device=device, dtype=dtype), scores.to(device=device, dtype=dtype), idxs.to(device)

    return make


def _impls(batched: bool):
    if batched:
        impls = {
            "deepops": lambda i: deepops.batched_nms(i[0], i[1], i[2], THRESHOLD),
            "numpy": lambda i: numpy_batched_nms(i[0].numpy(), i[1].numpy(), i[2].numpy(), THRESHOLD),
        }
    else:
        impls = {
            "deepops": lambda i: deepops.nms(i[0], i[1], THRESHOLD),
            "numpy": lambda i: numpy_nms(i[0].numpy(), i[1].numpy(), THRESHOLD),
        }
    try:
        import torchvision

        if batched:
            impls["torchvision"] = lambda i: torchvision.ops.batched_nms(i[0], i[1], i[2], THRESHOLD)
        else:
            impls["torchvision"] = lambda i: torchvision.ops.nms(i[0], i[1], THRESHOLD)
    except Exception:  # not installed, or built for another torch
        pass
    return impls


def _skip(name, impl, device, dtype):
    if impl == "numpy" and device.type != "cpu":
        return "NumPy runs on the CPU only"
    return None


for n, devices, quick in ((1_000, ("cpu", "cuda"), True), (10_000, ("cpu", "cuda"), True), (100_000, ("cuda",), False)):
    for op in ("nms", "batched_nms"):
        register(
            Workload(
                op=op,
                name=f"{op} {n:,} boxes",
                make_inputs=_maker(n),
                impls=_impls(op == "batched_nms"),
                devices=devices,
                quick=quick,
                skip=_skip,
            )
        )
