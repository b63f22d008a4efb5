"""Non-maximum suppression and box IoU, with torchvision.ops' semantics.

Ops (schemas in the ``deepops`` namespace):

=========================================================================  ======================================
``nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor``        kept indices, by decreasing score
``batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor``  NMS within each class
``box_iou(Tensor boxes1, Tensor boxes2) -> Tensor``                        the N x M IoU matrix
=========================================================================  ======================================

Semantics, as torchvision.ops (checked against it in the tests):

* boxes are ``(x1, y1, x2, y2)``; ``boxes`` is ``(N, 4)``, ``scores`` ``(N,)`` of the same dtype (float16,
  bfloat16, float32 or float64); the IoU of two boxes is computed with torchvision's CPU arithmetic in the boxes'
  precision, float32 for the 16-bit types (torchvision casts those to float32 under autocast, and its own kernels
  refuse them otherwise);
* a box is suppressed when its IoU with a kept box of higher rank is strictly greater than ``iou_threshold``; the
  rank is the *stable* descending sort of the scores, so equal scores keep their input order (NaN scores come
  first, as in ``torch.sort``), which is what torchvision's CPU kernel does;
* degenerate boxes (``x2 <= x1`` or ``y2 <= y1``) have a zero or negative area and the arithmetic goes on as in
  torchvision: an IoU of 0 / 0 is NaN and ``NaN > threshold`` is false, so such boxes are never suppressed by, and
  never suppress, anything at a threshold >= 0.  NaN or infinite coordinates are not an error either: they are
  computed with (NaN in any coordinate makes the IoU NaN, so that box is kept and suppresses nothing);
* ``batched_nms``: boxes only suppress boxes with the same ``idxs`` value (any integer dtype).  It is defined as
  per-class NMS on the original coordinates (torchvision's exact, per-class path), with no coordinate-offset
  approximation; the result is ordered by decreasing score with ties in index order;
* the result is an int64 tensor; empty inputs give an empty result;
* ``box_iou(boxes1, boxes2)``: ``(N, 4)`` and ``(M, 4)`` boxes of one dtype give the ``(N, M)`` IoU matrix, float32
  for 16-bit inputs (torchvision upcasts), with torchvision's arithmetic (NaN propagates).  Differentiable.

NMS has no gradient: its output is integer indices.  Under ``torch.compile`` its output size is data-dependent (an
unbacked symbolic size from the fake implementation), so ``fullgraph=True`` works without graph breaks.
"""

from __future__ import annotations

import torch

from .. import cpu
from .._library import define
from .._rules import INT_DTYPES, check_float, check_tensor, compute_dtype

# ------------------------------------------------------------------------------------------------------- checks


def _check_boxes(t, arg: str, op: str) -> None:
    check_float(t, arg, op)
    if t.dim() != 2 or t.shape[1] != 4:
        raise ValueError(f"deepops.{op}: '{arg}' must have shape (N, 4) as (x1, y1, x2, y2), got {tuple(t.shape)}")


def _check_nms_args(boxes, scores, idxs, op: str) -> None:
    """Clear errors for every bad combination: TypeError for dtypes, ValueError for shapes, RuntimeError for devices."""
    _check_boxes(boxes, "boxes", op)
    check_tensor(scores, "scores", op)
    if scores.dtype != boxes.dtype:
        raise TypeError(f"deepops.{op}: 'scores' has dtype {scores.dtype} but 'boxes' has dtype {boxes.dtype}")
    if scores.dim() != 1:
        raise ValueError(f"deepops.{op}: 'scores' must be 1-D, got shape {tuple(scores.shape)}")
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"deepops.{op}: 'boxes' has {boxes.shape[0]} boxes but 'scores' has {scores.shape[0]} scores"
        )
    if scores.device != boxes.device:
        raise RuntimeError(f"deepops.{op}: 'boxes' is on {boxes.device} but 'scores' is on {scores.device}")
    if idxs is None:
        return
    check_tensor(idxs, "idxs", op)
    if idxs.dtype not in INT_DTYPES:
        raise TypeError(f"deepops.{op}: 'idxs' (class indices) must have an integer dtype, got {idxs.dtype}")
    if idxs.dim() != 1:
        raise ValueError(f"deepops.{op}: 'idxs' must be 1-D, got shape {tuple(idxs.shape)}")
    if idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"deepops.{op}: 'boxes' has {boxes.shape[0]} boxes but 'idxs' has {idxs.shape[0]} entries")
    if idxs.device != boxes.device:
        raise RuntimeError(f"deepops.{op}: 'boxes' is on {boxes.device} but 'idxs' is on {idxs.device}")


def _check_iou_args(boxes1, boxes2) -> None:
    _check_boxes(boxes1, "boxes1", "box_iou")
    _check_boxes(boxes2, "boxes2", "box_iou")
    if boxes1.dtype != boxes2.dtype:
        raise TypeError(f"deepops.box_iou: 'boxes1' has dtype {boxes1.dtype} but 'boxes2' has dtype {boxes2.dtype}")
    if boxes1.device != boxes2.device:
        raise RuntimeError(f"deepops.box_iou: 'boxes1' is on {boxes1.device} but 'boxes2' is on {boxes2.device}")


def _check_nms(boxes, scores, iou_threshold):
    _check_nms_args(boxes, scores, None, "nms")


def _check_batched_nms(boxes, scores, idxs, iou_threshold):
    _check_nms_args(boxes, scores, idxs, "batched_nms")


# ------------------------------------------------------------------------------------------------------- fakes


def _kept_fake(boxes, *args):
    # the number of kept boxes depends on the data: an unbacked symbolic size under torch.compile
    n = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((n,), dtype=torch.int64)


def _box_iou_fake(boxes1, boxes2):
    return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]), dtype=compute_dtype(boxes1.dtype))


define("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor", _check_nms, cpu.nms.nms, _kept_fake)
define(
    "batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor",
    _check_batched_nms, cpu.nms.batched_nms, _kept_fake,
)
define("box_iou(Tensor boxes1, Tensor boxes2) -> Tensor", _check_iou_args, cpu.nms.box_iou, _box_iou_fake)

# ------------------------------------------------------------------------------------------------------ autograd
ops = torch.ops.deepops


def _max_grads(g, a, b):
    """torch.maximum's backward: the larger input takes the gradient, a tie shares it equally."""
    half = torch.where(a == b, g / 2, g)
    return half.masked_fill(a < b, 0), half.masked_fill(a > b, 0)


def _area_grad(t):
    w, h = t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]
    return torch.stack([-h, -w, h, w], -1)


def _box_iou_backward(grad, boxes1, boxes2):
    """The gradient of torchvision's box_iou expression, written out (so it works on any device and twice)."""
    cdt = compute_dtype(boxes1.dtype)
    a = boxes1.to(cdt)[:, None, :]  # (N, 1, 4)
    b = boxes2.to(cdt)[None, :, :]  # (1, M, 4)
    g = grad.to(cdt)
    area1 = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area2 = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh_raw = rb - lt
    wh = wh_raw.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    g_union = -g * ((inter / union) / union)
    g_inter = g / union - g_union
    g_wh = torch.stack([g_inter * wh[..., 1], g_inter * wh[..., 0]], -1) * (wh_raw >= 0)
    g_rb_a, g_rb_b = _max_grads(g_wh, -a[..., 2:], -b[..., 2:])  # min(a, b) = -max(-a, -b)
    g_lt_a, g_lt_b = _max_grads(-g_wh, a[..., :2], b[..., :2])
    ga = torch.cat([g_lt_a, g_rb_a], -1)
    gb = torch.cat([g_lt_b, g_rb_b], -1)
    # the areas: d/dx1 (x2 - x1)(y2 - y1) = -(y2 - y1), and so on
    ga = ga + g_union[..., None] * _area_grad(a)
    gb = gb + g_union[..., None] * _area_grad(b)
    return ga.sum(1).to(boxes1.dtype), gb.sum(0).to(boxes2.dtype)


def _box_iou_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _box_iou_bwd(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    g1, g2 = _box_iou_backward(grad, boxes1, boxes2)
    return (g1 if ctx.needs_input_grad[0] else None), (g2 if ctx.needs_input_grad[1] else None)


torch.library.register_autograd("deepops::box_iou", _box_iou_bwd, setup_context=_box_iou_setup)

# ------------------------------------------------------------------------------------------------------ public API


def _tensors(op, **args):
    for name, t in args.items():
        check_tensor(t, name, op)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.nms``: indices (int64) of the boxes kept by non-maximum suppression, by decreasing score.

    ``boxes``: ``(N, 4)`` as ``(x1, y1, x2, y2)``; ``scores``: ``(N,)`` of the same dtype; a box is discarded when
    its IoU with a higher-scored kept box is > ``iou_threshold``.  Ties in score keep the input order.
    """
    _tensors("nms", boxes=boxes, scores=scores)
    return ops.nms(boxes, scores, float(iou_threshold))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms``: NMS within each category ``idxs`` (an integer tensor), in one call.

    Returns the kept indices (int64) sorted by decreasing score (ties in index order).
    """
    _tensors("batched_nms", boxes=boxes, scores=scores, idxs=idxs)
    return ops.batched_nms(boxes, scores, idxs, float(iou_threshold))


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.box_iou``: the ``(N, M)`` IoU matrix of ``(N, 4)`` and ``(M, 4)`` boxes (x1, y1, x2, y2)."""
    _tensors("box_iou", boxes1=boxes1, boxes2=boxes2)
    return ops.box_iou(boxes1, boxes2)
