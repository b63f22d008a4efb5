"""Numba CPU kernels for 2-D max pooling, forward (values, with or without indices) and backward.

Semantics (those of PyTorch's kernels, checked against them in the tests):

* window ``(oh, ow)`` covers rows ``oh * sh - ph + a * dh`` (``a < kh``) and columns likewise; positions outside
  the input are skipped (implicit -inf padding);
* the scan goes row by row, column by column; an element replaces the running maximum when it is greater or NaN
  (``v > m or v != v``), so the first of equal maxima wins and the *last* NaN of a window wins (its value and its
  index), exactly as PyTorch's CPU and CUDA kernels;
* the running maximum starts at -inf with the index of the window's first in-bounds element, so an all -inf window
  reports that element;
* indices are flat per plane: ``ih * W + iw`` (int64).

Strategy.

* NCHW (``x`` as ``(planes, H, W)``): ``prange`` over planes, each plane is one thread's contiguous block.  Inside a
  plane, the output columns whose window lies wholly inside the input in width (``ow_lo <= ow < ow_hi``) are done
  by a branch-free loop over the window (no bounds tests), the few border columns by the general loop.
* channels_last (``x`` as ``(N, H, W, C)``): ``prange`` over output rows ``(n, oh)``; for each output pixel the
  window is scanned with the channel loop innermost, a contiguous, branch-free ``select`` that LLVM vectorises.
* backward is a gather, not a scatter: each input element sums the gradients of the windows that contain it and
  whose index names it.  The windows that contain input row ``ih`` are the same for every column, so they are
  listed once per call (``_candidates``: at most ``ceil(k / s)`` per row); the sum runs over them in increasing
  ``(oh, ow)``, the order in which PyTorch's scatter accumulates, so float32 results are bit-for-bit PyTorch's.
  Every input element is written by exactly one thread: no atomics, deterministic.

float16 and bfloat16 are converted to float32 by the caller (exact for a maximum; the gradient sum runs in float32
and is rounded once).  ``cache=True`` keeps the compiled code on disk.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, cache=True, nogil=True, boundscheck=False)
_SERIAL = dict(cache=True, nogil=True, boundscheck=False)


@numba.njit(**_SERIAL)
def _first_in(start, step):
    """The first of ``start, start + step, ...`` that is >= 0."""
    if start >= 0:
        return start
    return start + ((-start + step - 1) // step) * step


@numba.njit(**_SERIAL)
def _interior(n_in, n_out, k, s, p, d):
    """The output range [lo, hi) whose windows lie wholly inside [0, n_in)."""
    lo = (p + s - 1) // s
    span = (k - 1) * d
    # o * s - p + span <= n_in - 1  <=>  o <= (n_in - 1 - span + p) / s
    top = n_in - 1 - span + p
    hi = top // s + 1 if top >= 0 else 0
    if hi > n_out:
        hi = n_out
    if lo > hi:
        lo = hi
    return lo, hi


@numba.njit(**_SERIAL)
def _candidates(n_in, n_out, k, s, p, d):
    """For each input position i: the outputs o whose window contains i, increasing (``cand[i, :cnt[i]]``)."""
    cand = np.empty((n_in, k), np.int64)
    cnt = np.zeros(n_in, np.int64)
    for i in range(n_in):
        c = 0
        for a in range(k - 1, -1, -1):  # larger tap -> smaller output index
            t = i + p - a * d
            if t >= 0 and t % s == 0:
                o = t // s
                if o < n_out:
                    cand[i, c] = o
                    c += 1
        cnt[i] = c
    return cand, cnt


# ------------------------------------------------------------------------------------------------- NCHW forward


@numba.njit(**_JIT)
def forward_nchw(x, out, ind, with_ind, kh, kw, sh, sw, ph, pw, dh, dw):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    ow_lo, ow_hi = _interior(W, OW, kw, sw, pw, dw)
    neg_inf = x.dtype.type(-np.inf)
    for pl in prange(P):
        xp = x[pl]
        op = out[pl]
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = _first_in(h0, dh)
            he = min(h0 + (kh - 1) * dh + 1, H)
            # border columns (window partly outside in width): general loop
            for j in range(ow_lo + OW - ow_hi):
                ow = j if j < ow_lo else ow_hi + (j - ow_lo)
                w0 = ow * sw - pw
                ws = _first_in(w0, dw)
                we = min(w0 + (kw - 1) * dw + 1, W)
                m = neg_inf
                mi = hs * W + ws
                for ih in range(hs, he, dh):
                    for iw in range(ws, we, dw):
                        v = xp[ih, iw]
                        if v > m or v != v:
                            m = v
                            mi = ih * W + iw
                op[oh, ow] = m
                if with_ind:
                    ind[pl, oh, ow] = mi
            # interior columns: no bounds tests in width
            if with_ind:
                for ow in range(ow_lo, ow_hi):
                    w0 = ow * sw - pw
                    m = neg_inf
                    mi = hs * W + w0
                    for ih in range(hs, he, dh):
                        for a in range(kw):
                            iw = w0 + a * dw
                            v = xp[ih, iw]
                            take = v > m or v != v
                            m = v if take else m
                            mi = ih * W + iw if take else mi
                    op[oh, ow] = m
                    ind[pl, oh, ow] = mi
            else:
                for ow in range(ow_lo, ow_hi):
                    w0 = ow * sw - pw
                    m = neg_inf
                    for ih in range(hs, he, dh):
                        for a in range(kw):
                            v = xp[ih, w0 + a * dw]
                            m = v if (v > m or v != v) else m
                    op[oh, ow] = m


# -------------------------------------------------------------------------------------------- NHWC forward


@numba.njit(**_JIT)
def forward_nhwc(x, out, ind, with_ind, kh, kw, sh, sw, ph, pw, dh, dw):
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    neg_inf = x.dtype.type(-np.inf)
    for r in prange(N * OH):
        n = r // OH
        oh = r - n * OH
        h0 = oh * sh - ph
        hs = _first_in(h0, dh)
        he = min(h0 + (kh - 1) * dh + 1, H)
        xn = x[n]
        for ow in range(OW):
            w0 = ow * sw - pw
            ws = _first_in(w0, dw)
            we = min(w0 + (kw - 1) * dw + 1, W)
            o = out[n, oh, ow]
            for c in range(C):
                o[c] = neg_inf
            if with_ind:
                oi = ind[n, oh, ow]
                first = hs * W + ws
                for c in range(C):
                    oi[c] = first
                for ih in range(hs, he, dh):
                    for iw in range(ws, we, dw):
                        xv = xn[ih, iw]
                        flat = ih * W + iw
                        for c in range(C):
                            v = xv[c]
                            take = v > o[c] or v != v
                            o[c] = v if take else o[c]
                            oi[c] = flat if take else oi[c]
            else:
                for ih in range(hs, he, dh):
                    for iw in range(ws, we, dw):
                        xv = xn[ih, iw]
                        for c in range(C):
                            v = xv[c]
                            o[c] = v if (v > o[c] or v != v) else o[c]


# -------------------------------------------------------------------------------------------------- backward


@numba.njit(**_JIT)
def backward_nchw(g, ind, gin, kh, kw, sh, sw, ph, pw, dh, dw):
    P, H, W = gin.shape
    OH, OW = g.shape[1], g.shape[2]
    ch, nh = _candidates(H, OH, kh, sh, ph, dh)
    cw, nw = _candidates(W, OW, kw, sw, pw, dw)
    zero = gin.dtype.type(0)
    for pl in prange(P):
        gp = g[pl]
        ip = ind[pl]
        out = gin[pl]
        for ih in range(H):
            for iw in range(W):
                flat = ih * W + iw
                acc = zero
                for a in range(nh[ih]):
                    oh = ch[ih, a]
                    for b in range(nw[iw]):
                        ow = cw[iw, b]
                        if ip[oh, ow] == flat:
                            acc += gp[oh, ow]
                out[ih, iw] = acc


@numba.njit(**_JIT)
def backward_nhwc(g, ind, gin, kh, kw, sh, sw, ph, pw, dh, dw):
    N, H, W, C = gin.shape
    OH, OW = g.shape[1], g.shape[2]
    ch, nh = _candidates(H, OH, kh, sh, ph, dh)
    cw, nw = _candidates(W, OW, kw, sw, pw, dw)
    zero = gin.dtype.type(0)
    for r in prange(N * H):
        n = r // H
        ih = r - n * H
        for iw in range(W):
            flat = ih * W + iw
            acc = gin[n, ih, iw]
            for c in range(C):
                acc[c] = zero
            for a in range(nh[ih]):
                oh = ch[ih, a]
                for b in range(nw[iw]):
                    ow = cw[iw, b]
                    gv = g[n, oh, ow]
                    iv = ind[n, oh, ow]
                    for c in range(C):
                        acc[c] += gv[c] if iv[c] == flat else zero
