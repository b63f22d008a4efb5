"""Turn the detector's dense outputs into boxes: peak finding, score threshold, NMS.

Modes (``mode``), to show what each stage of suppression does:

* ``"raw"``: every grid cell whose score passes the threshold becomes a box (the over-detection of a dense head);
* ``"nms"``: raw boxes, then ``deepops.nms`` (YOLO-style);
* ``"peaks"``: only local maxima of the heatmap (a cell equal to the 3x3 ``deepops.max_pool2d`` of the heatmap:
  CenterNet's NMS-free decoding);
* ``"peaks+nms"`` (default): peaks, then ``deepops.nms`` to remove the duplicates that survive (two neighbouring
  peaks on one nucleus).

A detection is ``(x1, y1, x2, y2)`` in input pixels, a score in [0, 1]; results are sorted by decreasing score.
"""

from __future__ import annotations

import torch

import deepops

from ..models.detector import STRIDE

MODES = ("raw", "nms", "peaks", "peaks+nms")
DEFAULT_THRESHOLD = 0.4
DEFAULT_IOU = 0.4
MAX_DETECTIONS = 2000  # per image, a guard against a flat heatmap on a huge image


def dense_boxes(out: torch.Tensor, stride: int = STRIDE) -> tuple[torch.Tensor, torch.Tensor]:
    """One (B, 5, gh, gw) output -> boxes (B, gh*gw, 4) and scores (B, gh*gw) for every cell."""
    B, _, gh, gw = out.shape
    ys = torch.arange(gh, dtype=out.dtype, device=out.device)[:, None].expand(gh, gw)
    xs = torch.arange(gw, dtype=out.dtype, device=out.device)[None, :].expand(gh, gw)
    cx = (xs + out[:, 1]) * stride
    cy = (ys + out[:, 2]) * stride
    w = torch.exp(out[:, 3].clamp(max=8.0)) * stride
    h = torch.exp(out[:, 4].clamp(max=8.0)) * stride
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).reshape(B, -1, 4)
    return boxes, torch.sigmoid(out[:, 0]).reshape(B, -1)


def peak_mask(out: torch.Tensor) -> torch.Tensor:
    """(B, gh*gw) bool: cells that are the maximum of their 3x3 neighbourhood of heatmap logits."""
    logit = out[:, :1]
    pooled = deepops.max_pool2d(logit, 3, stride=1, padding=1)
    return (logit == pooled).reshape(out.shape[0], -1)


def decode(
    out: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    iou: float = DEFAULT_IOU,
    mode: str = "peaks+nms",
    max_detections: int = MAX_DETECTIONS,
    return_cells: bool = False,
) -> list[tuple[torch.Tensor, ...]]:
    """Per image: (boxes (N, 4), scores (N,)) sorted by decreasing score.

    ``return_cells=True`` adds a third tensor, (N, 2): the (x, y) pixel centre of the grid cell that made each box
    (tiling assigns detections to tiles by it: the cell, unlike the predicted box, is where the network looked).
    """
    if mode not in MODES:
        raise ValueError(f"decode: 'mode' must be one of {MODES}, got {mode!r}")
    out = out.detach().float()
    boxes, scores = dense_boxes(out)
    keep = scores >= threshold
    if mode.startswith("peaks"):
        keep &= peak_mask(out)
    gh, gw = out.shape[-2:]
    cells = torch.stack(
        torch.meshgrid(torch.arange(gw, dtype=out.dtype), torch.arange(gh, dtype=out.dtype), indexing="xy"), -1
    ).reshape(-1, 2)
    cells = (cells + 0.5) * STRIDE
    res = []
    for b in range(out.shape[0]):
        bx, sc, ce = boxes[b][keep[b]], scores[b][keep[b]], cells[keep[b].cpu()]
        order = torch.argsort(sc, descending=True, stable=True)[:max_detections]
        bx, sc, ce = bx[order], sc[order], ce[order.cpu()]
        if mode.endswith("nms") and len(sc):
            k = deepops.nms(bx, sc, iou)
            bx, sc, ce = bx[k], sc[k], ce[k.cpu()]
        res.append((bx, sc, ce) if return_cells else (bx, sc))
    return res
