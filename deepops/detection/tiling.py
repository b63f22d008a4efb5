"""Detection on images of any size: whole-image inference, or overlapping tiles merged by NMS.

Strategy: tiles of ``tile`` pixels (a multiple of the stride, 4) start at multiples of the stride, overlapping by
``overlap`` pixels.  Each tile is decoded *without* NMS (threshold + heatmap peaks), and keeps only the detections
made by grid cells in the part of the tile it owns: the boundary between two neighbouring tiles is the middle of
their overlap.  The kept detections of all tiles are then merged by one ``deepops.nms`` over the whole image.

Why this equals a whole-image run: the network is fully convolutional with a receptive field of 46 pixels, so an
output cell farther than ~23 pixels (+ the 3x3 peak window, 4 pixels) from a tile edge sees exactly what it would
see in the whole image; with the grids aligned (tile origins on multiples of 4) the owned part of every tile then
reproduces the whole image's heatmap, peaks and boxes, and the single NMS at the end sees the same candidates.
``overlap`` must therefore be at least 2 x ``MIN_MARGIN``; the default leaves room to spare.
"""

from __future__ import annotations

import numpy as np
import torch

import deepops

from ..models.detector import STRIDE
from .data import pad_to_stride
from .decode import DEFAULT_IOU, DEFAULT_THRESHOLD, decode

MIN_MARGIN = 28  # half the receptive field (23) + the peak window reach, rounded up to the stride
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 96


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: multiples of STRIDE, stepping tile - overlap, the last one reaching the end."""
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    last = ((n - tile) // STRIDE) * STRIDE
    if last > starts[-1]:
        starts.append(last)
    return starts


def _ownership(starts: list[int], n: int, tile: int) -> list[tuple[float, float]]:
    ends = [s + tile if k + 1 < len(starts) else n for k, s in enumerate(starts)]
    bounds = [-float("inf")] + [(starts[k + 1] + ends[k]) / 2 for k in range(len(starts) - 1)] + [float("inf")]
    return [(bounds[k], bounds[k + 1]) for k in range(len(starts))]


@torch.no_grad()
def _forward(model: torch.nn.Module, img: np.ndarray, device: torch.device) -> torch.Tensor:
    x = pad_to_stride(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]).to(device)
    return model(x).cpu()


@torch.no_grad()
def detect(
    model: torch.nn.Module,
    image: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    iou: float = DEFAULT_IOU,
    mode: str = "peaks+nms",
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Detections on one normalised (H, W) image: boxes (N, 4) as (x1, y1, x2, y2) and scores (N,), by score.

    ``tile=None`` (or an image no larger than ``tile``) runs the whole image at once.
    """
    H, W = image.shape
    device = torch.device(device)
    if tile is None or (H <= tile and W <= tile):
        bx, sc = decode(_forward(model, image, device), threshold, iou, mode)[0]
        return bx.numpy(), sc.numpy()
    if tile % STRIDE or overlap % STRIDE or overlap < 2 * MIN_MARGIN or overlap >= tile:
        raise ValueError(
            f"detect: 'tile' ({tile}) and 'overlap' ({overlap}) must be multiples of {STRIDE} with "
            f"{2 * MIN_MARGIN} <= overlap < tile"
        )
    tile_mode = {"nms": "raw", "peaks+nms": "peaks"}.get(mode, mode)
    ys, xs = _starts(H, tile, overlap), _starts(W, tile, overlap)
    oy, ox = _ownership(ys, H, tile), _ownership(xs, W, tile)
    all_b, all_s = [], []
    for a, y0 in enumerate(ys):
        y1 = y0 + tile if a + 1 < len(ys) else H
        for b, x0 in enumerate(xs):
            x1 = x0 + tile if b + 1 < len(xs) else W
            out = _forward(model, image[y0:y1, x0:x1], device)
            bx, sc, ce = decode(out, threshold, iou, tile_mode, return_cells=True)[0]
            bx = bx + torch.tensor([x0, y0, x0, y0], dtype=bx.dtype)
            cx, cy = ce[:, 0] + x0, ce[:, 1] + y0  # the cell that made the box decides which tile keeps it
            own = (cy >= oy[a][0]) & (cy < oy[a][1]) & (cx >= ox[b][0]) & (cx < ox[b][1])
            all_b.append(bx[own])
            all_s.append(sc[own])
    bx, sc = torch.cat(all_b), torch.cat(all_s)
    order = torch.argsort(sc, descending=True, stable=True)
    bx, sc = bx[order], sc[order]
    if mode.endswith("nms") and len(sc):
        k = deepops.nms(bx, sc, iou)
        bx, sc = bx[k], sc[k]
    return bx.numpy(), sc.numpy()
