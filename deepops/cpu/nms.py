"""The CPU kernels of non-maximum suppression (NMS) and pairwise box IoU: Numba loops, and the torch glue that runs
them (at the bottom).

Semantics (those of torchvision's CPU kernel, arithmetic included):

* boxes are ``(x1, y1, x2, y2)``; ``area = (x2 - x1) * (y2 - y1)`` in the boxes' precision (float32 for the 16-bit
  types), so a degenerate box can have a zero or negative area;
* for a kept box ``i`` and a later box ``j``: ``xx1 = max(x1_i, x1_j)`` ... with C++'s ``std::max/std::min``
  (``std::max(a, b) = a < b ? b : a``), ``w = max(0, xx2 - xx1)``, ``h`` likewise, ``inter = w * h`` and
  ``iou = inter / (area_i + area_j - inter)``; ``j`` is suppressed when ``iou > iou_threshold`` (the comparison in
  float64).  A NaN IoU (0 / 0, NaN coordinates) never suppresses;
* the caller hands in ``order``, the stable descending sort of the scores (``torch.sort(stable=True)``); the kept
  indices come out in that order;
* batched NMS: a box only suppresses boxes of its own class (``cls``).

Strategy.  torchvision compares every kept box with every later box: O(N * kept).  Here the sweep goes in score
order and asks, for each box ``j``, whether a box *kept so far* suppresses it.  For a threshold >= 0 a box can only
be suppressed by a box that overlaps it with positive width and height (otherwise ``inter = 0`` and the IoU is
0, -0 or NaN, never > threshold), so the kept boxes are held in a uniform grid (a hash table keyed by
``(class, cell x, cell y)``) and ``j`` is compared only with the kept boxes in the cells it covers: O(N * k) with
``k`` the few kept boxes near ``j``.  The grid prunes, it never decides: every candidate pair goes through the exact
torchvision arithmetic, so the result is bit-for-bit the same.  Boxes that cannot take part in any suppression for
a threshold >= 0 (width or height <= 0, or an area that is NaN or infinite: their IoU with any box is 0, -0 or
NaN) are kept without a search.  Negative or NaN thresholds take the plain torchvision loop (exact, O(N * kept)).

The sweep is sequential by nature (whether ``j`` is kept depends on every earlier decision); at O(N * k) it takes
well under a millisecond for 10,000 boxes, so only the O(N) preparation runs in parallel, and only for large N
where threads pay for their start-up.  Memory: O(N) (the grid holds at most ``_CELL_CAP`` entries per kept box).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import prange

from .._rules import compute_dtype

_SERIAL = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")  # IEEE division: 0 / 0 is NaN
_PARALLEL = dict(_SERIAL, parallel=True)

#: boxes covering more grid cells than this go into a short list that every query scans
_CELL_CAP = 64
#: below this many boxes the plain torchvision loop is as fast as building the grid
_SMALL_N = 32
#: from this many boxes on, the O(N) preparation runs on all cores
_PARALLEL_N = 50_000

# odd 63-bit constants for the cell hash (kept below 2**63 so that Numba stays in int64 arithmetic)
_H1 = 0x1E3779B97F4A7C15
_H2 = 0x42B2AE3D27D4EB4F
_H3 = 0x165667B19E3779F9


@numba.njit(inline="always", **_SERIAL)
def _suppresses(ix1, iy1, ix2, iy2, iarea, jx1, jy1, jx2, jy2, jarea, zero, thr):
    """torchvision's test, operation for operation: does kept box i suppress box j?"""
    xx1 = jx1 if ix1 < jx1 else ix1  # std::max(ix1, jx1)
    yy1 = jy1 if iy1 < jy1 else iy1
    xx2 = jx2 if jx2 < ix2 else ix2  # std::min(ix2, jx2)
    yy2 = jy2 if jy2 < iy2 else iy2
    dw = xx2 - xx1
    dh = yy2 - yy1
    w = dw if zero < dw else zero  # std::max(0, dw): NaN gives 0
    h = dh if zero < dh else zero
    inter = w * h
    ovr = inter / (iarea + jarea - inter)
    return ovr > thr


@numba.njit(**_SERIAL)
def nms_exact(x1, y1, x2, y2, cls, order, thr, zero, keep):
    """torchvision's loop (any threshold): each kept box suppresses the later boxes of its class.  Returns the count."""
    n = order.size
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(n, np.uint8)
    cnt = 0
    for a in range(n):
        i = order[a]
        if suppressed[i]:
            continue
        keep[cnt] = i
        cnt += 1
        ix1, iy1, ix2, iy2, iarea, ci = x1[i], y1[i], x2[i], y2[i], areas[i], cls[i]
        for b in range(a + 1, n):
            j = order[b]
            if suppressed[j] or cls[j] != ci:
                continue
            if _suppresses(ix1, iy1, ix2, iy2, iarea, x1[j], y1[j], x2[j], y2[j], areas[j], zero, thr):
                suppressed[j] = 1
    return cnt


def _prepare_impl(x1, y1, x2, y2, areas, active, size):
    """areas, which boxes can take part in a suppression (threshold >= 0), and each box's larger side."""
    for i in prange(x1.size):
        w = x2[i] - x1[i]
        h = y2[i] - y1[i]
        a = w * h
        areas[i] = a
        ok = w > 0 and h > 0 and math.isfinite(a)
        active[i] = ok
        size[i] = max(w, h) if ok else 0.0


_prepare_serial = numba.njit(**_SERIAL)(_prepare_impl)
_prepare_parallel = numba.njit(**_PARALLEL)(_prepare_impl)


@numba.njit(inline="always", **_SERIAL)
def _cell(v, origin, inv):
    """Grid cell of coordinate v: monotone in v (so overlapping intervals share a cell), clamped to 2**30."""
    c = (np.float64(v) - origin) * inv
    if c > 1073741824.0:
        c = 1073741824.0
    return np.int64(math.floor(c))


@numba.njit(inline="always", **_SERIAL)
def _hash(c, gx, gy, mask):
    h = c * _H1 ^ gx * _H2 ^ gy * _H3
    h ^= h >> 29
    return h & mask


@numba.njit(**_SERIAL)
def nms_grid(x1, y1, x2, y2, cls, order, thr, zero, areas, active, size, keep):
    """The grid sweep for thresholds >= 0 (see the module docstring).  Returns the number of kept boxes."""
    n = order.size
    nact = 0
    ox = np.inf
    oy = np.inf
    for i in range(n):
        if active[i]:
            nact += 1
            ox = min(ox, np.float64(x1[i]))
            oy = min(oy, np.float64(y1[i]))
    if nact == 0:  # nothing can suppress anything
        keep[:n] = order
        return n
    sizes = np.empty(nact, np.float64)
    k = 0
    for i in range(n):
        if active[i]:
            sizes[k] = size[i]
            k += 1
    # cells about as large as most boxes: 90 % of the boxes cover at most 2 x 2 cells
    cell = np.percentile(sizes, 90.0)
    inv = 1.0 / cell
    hbits = 4
    while (1 << hbits) < 2 * nact:
        hbits += 1
    mask = (1 << hbits) - 1
    heads = np.full(1 << hbits, -1, np.int32)
    cap = 0
    for i in range(n):
        if active[i]:
            ncell = (_cell(x2[i], ox, inv) - _cell(x1[i], ox, inv) + 1) * (_cell(y2[i], oy, inv) - _cell(y1[i], oy, inv) + 1)
            if ncell <= _CELL_CAP:
                cap += ncell
    enext = np.empty(max(cap, 1), np.int32)
    ebox = np.empty(max(cap, 1), np.int32)
    nent = 0
    big = np.empty(n, np.int32)  # kept boxes that cover too many cells: scanned by every query
    nbig = 0
    stamp = np.full(n, -1, np.int64)  # the last query that compared with this kept box (no double work)
    cnt = 0
    for r in range(n):
        j = order[r]
        if not active[j]:
            keep[cnt] = j
            cnt += 1
            continue
        jx1, jy1, jx2, jy2, ja, cj = x1[j], y1[j], x2[j], y2[j], areas[j], cls[j]
        gx0 = _cell(jx1, ox, inv)
        gx1 = _cell(jx2, ox, inv)
        gy0 = _cell(jy1, oy, inv)
        gy1 = _cell(jy2, oy, inv)
        small = (gx1 - gx0 + 1) * (gy1 - gy0 + 1) <= _CELL_CAP
        hit = False
        for b in range(nbig):
            i = big[b]
            if cls[i] == cj and _suppresses(x1[i], y1[i], x2[i], y2[i], areas[i], jx1, jy1, jx2, jy2, ja, zero, thr):
                hit = True
                break
        if not hit:
            if small:
                for gx in range(gx0, gx1 + 1):
                    for gy in range(gy0, gy1 + 1):
                        e = heads[_hash(cj, gx, gy, mask)]
                        while e >= 0:
                            i = ebox[e]
                            if stamp[i] != r:
                                stamp[i] = r
                                if cls[i] == cj and _suppresses(
                                    x1[i], y1[i], x2[i], y2[i], areas[i], jx1, jy1, jx2, jy2, ja, zero, thr
                                ):
                                    hit = True
                                    break
                            e = enext[e]
                        if hit:
                            break
                    if hit:
                        break
            else:  # a very large box: compare with every kept box of its class
                for m in range(cnt):
                    i = keep[m]
                    if active[i] and cls[i] == cj and _suppresses(
                        x1[i], y1[i], x2[i], y2[i], areas[i], jx1, jy1, jx2, jy2, ja, zero, thr
                    ):
                        hit = True
                        break
        if hit:
            continue
        keep[cnt] = j
        cnt += 1
        if small:
            for gx in range(gx0, gx1 + 1):
                for gy in range(gy0, gy1 + 1):
                    hsh = _hash(cj, gx, gy, mask)
                    enext[nent] = heads[hsh]
                    ebox[nent] = j
                    heads[hsh] = nent
                    nent += 1
        else:
            big[nbig] = j
            nbig += 1
    return cnt


def keep_indices(x1, y1, x2, y2, cls, order, thr: float, keep) -> int:
    """Kept indices into ``keep`` (in ``order``'s order); returns their number.  Arrays: 1-D, contiguous; the
    coordinates float32 or float64, ``cls`` and ``order`` int64."""
    n = order.size
    zero = x1.dtype.type(0)
    if n <= _SMALL_N or not thr >= 0:  # negative or NaN threshold: the plain loop
        return nms_exact(x1, y1, x2, y2, cls, order, np.float64(thr), zero, keep)
    areas = np.empty_like(x1)
    active = np.empty(n, np.bool_)
    size = np.empty(n, np.float64)
    prep = _prepare_parallel if n >= _PARALLEL_N else _prepare_serial
    prep(x1, y1, x2, y2, areas, active, size)
    return nms_grid(x1, y1, x2, y2, cls, order, np.float64(thr), zero, areas, active, size, keep)


# ------------------------------------------------------------------------------------------------------ box IoU

# How box_iou rounds ``x2 - x1`` and ``y2 - y1``: not at all (float32/float64 boxes), or to the 16-bit type the
# boxes came in (torchvision computes 16-bit boxes in that type; deepops computes in float32 and rounds there)
ROUND_NONE, ROUND_FLOAT16, ROUND_BFLOAT16 = 0, 1, 2


@numba.njit(inline="always", **_SERIAL)
def _round_half(v, mode):
    """v (float32) rounded to float16 (ROUND_FLOAT16) or bfloat16 (ROUND_BFLOAT16), half to even, as PyTorch rounds the
    difference of two half tensors.  The spacing of the target format at v is 2**(exponent - bits + 1), never
    finer than its subnormal spacing; values beyond its largest finite number round to infinity."""
    if mode == ROUND_NONE or v != v or math.isinf(v) or v == 0:
        return v
    if mode == ROUND_FLOAT16:
        bits, min_exp, largest = 11, -14, 65504.0
    else:
        bits, min_exp, largest = 8, -126, 3.3895313892515355e38
    _, e = math.frexp(np.float64(v))  # v = m * 2**e with 0.5 <= |m| < 1
    ulp_exp = max(e - 1, min_exp) - (bits - 1)
    r = np.round(np.float64(v) * 2.0 ** (-ulp_exp)) * 2.0**ulp_exp  # np.round: half to even; all exact
    if r > largest:
        return np.float32(np.inf)
    if r < -largest:
        return np.float32(-np.inf)
    return np.float32(r)


@numba.njit(**_PARALLEL)
def _box_iou(a, b, mode, zero, out):
    """out[i, j] = IoU(a[i], b[j]) with torchvision.ops.box_iou's arithmetic: ``max``/``min`` propagate NaN,
    ``w = clamp(x2 - x1, min=0)`` (the difference rounded to the 16-bit type first when ``mode`` says so),
    ``iou = w * h / (area_a + area_b - w * h)``."""
    n = a.shape[0]
    m = b.shape[0]
    area_b = np.empty(m, a.dtype)
    for j in range(m):
        area_b[j] = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
    for i in prange(n):
        ax1, ay1, ax2, ay2 = a[i, 0], a[i, 1], a[i, 2], a[i, 3]
        area_a = (ax2 - ax1) * (ay2 - ay1)
        for j in range(m):
            bx1, by1, bx2, by2 = b[j, 0], b[j, 1], b[j, 2], b[j, 3]
            # torch.maximum / torch.minimum: NaN if either is NaN
            ltx = ax1 if (ax1 > bx1 or ax1 != ax1) else bx1
            lty = ay1 if (ay1 > by1 or ay1 != ay1) else by1
            rbx = ax2 if (ax2 < bx2 or ax2 != ax2) else bx2
            rby = ay2 if (ay2 < by2 or ay2 != ay2) else by2
            w = _round_half(rbx - ltx, mode)
            h = _round_half(rby - lty, mode)
            w = zero if w < zero else w  # clamp(min=0): NaN stays NaN
            h = zero if h < zero else h
            inter = w * h
            out[i, j] = inter / (area_a + area_b[j] - inter)


# -------------------------------------------------------------------- the torch glue (arguments already checked)


def _nms(boxes, scores, idxs, iou_threshold):
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    # the stable descending sort of torch itself: equal scores keep their order, NaN first
    order = torch.sort(scores.detach(), stable=True, descending=True).indices
    b = boxes.detach().to(compute_dtype(boxes.dtype))
    x1, y1, x2, y2 = b.t().contiguous().numpy()
    cls = idxs.detach().to(torch.int64).contiguous().numpy() if idxs is not None else np.zeros(n, np.int64)
    keep = np.empty(n, np.int64)
    cnt = keep_indices(x1, y1, x2, y2, cls, order.numpy(), float(iou_threshold), keep)
    return torch.from_numpy(keep[:cnt].copy())


def nms(boxes, scores, iou_threshold):
    return _nms(boxes, scores, None, iou_threshold)


def batched_nms(boxes, scores, idxs, iou_threshold):
    return _nms(boxes, scores, idxs, iou_threshold)


_ROUNDING = {torch.float16: ROUND_FLOAT16, torch.bfloat16: ROUND_BFLOAT16}


def box_iou(boxes1, boxes2):
    odt = compute_dtype(boxes1.dtype)
    out = torch.empty(boxes1.shape[0], boxes2.shape[0], dtype=odt)
    if out.numel() == 0:
        return out
    a = boxes1.detach().to(odt).contiguous().numpy()
    b = boxes2.detach().to(odt).contiguous().numpy()
    _box_iou(a, b, _ROUNDING.get(boxes1.dtype, ROUND_NONE), a.dtype.type(0), out.numpy())
    return out
