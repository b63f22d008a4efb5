"""The CPU kernels of 2-D max pooling, forward (values, with or without indices) and backward: Numba loops, and the
torch glue that runs them (at the bottom).

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
* backward: every gradient element is written by exactly one thread, so there are no atomics and no races, and the
  sums run in increasing (oh, ow), the order of PyTorch's CPU kernel (bitwise PyTorch's for float32/float64).
  NCHW: a plane is owned by one thread, which accumulates the plane's output gradients at their indices in output
  order.  Seen from an input element this is a gather (each input element sums the gradients of the windows whose
  maximum it is, in increasing (oh, ow)); it is written as an ordered accumulation per owned plane because the
  per-element gather loop (tried first) costs a data-dependent branch per candidate window and measured about
  five to ten times slower.  channels_last: a true gather, ``prange`` over input rows: each input pixel visits the
  windows that contain it (``_candidates``: the windows containing row ``ih`` are the same for every column, at
  most ``ceil(k / s)`` per dimension) and adds, channel by channel with a branch-free select that vectorises, the
  gradients whose index names it.  Windows lying wholly in the padding (possible with dilation) pass nothing on.

float16 and bfloat16 are converted to float32 by the glue (exact for a maximum; the gradient sum runs in float32
and is rounded once).  ``cache=True`` keeps the compiled code on disk.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange

from .._rules import compute_dtype, memory_format, pool_out_hw

_JIT = dict(parallel=True, cache=True, nogil=True, boundscheck=False)
_SERIAL = dict(cache=True, nogil=True, boundscheck=False)


@numba.njit(**_SERIAL)
def _first_in(start, step):
    """The first of ``start, start + step, ...`` that is >= 0."""
    if start >= 0:
        return start
    return start + ((-start + step - 1) // step) * step


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


@numba.njit(**_SERIAL)
def _column_plan(W, OW, kw, sw, pw, dw):
    """Where tap b of every output column lives in the phase-split rows (see forward_nchw).

    Column ``ow * sw - pw + b * dw`` is ``(ow + off[b]) * sw + phase[b]``; in the split buffer it is element
    ``ow + off[b] + lpad`` of phase ``phase[b]``.  Also the first in-bounds column of each window (``first``), whose
    index a window starts from, and whether the window has any column inside the input (``valid``).
    """
    phase = np.empty(kw, np.int64)
    off = np.empty(kw, np.int64)
    for b in range(kw):
        t = b * dw - pw
        r = t % sw
        phase[b] = r
        off[b] = (t - r) // sw
    lpad = max(0, -off.min())
    length = OW + off.max() + lpad
    first = np.empty(OW, np.int64)
    valid = np.empty(OW, np.bool_)
    for ow in range(OW):
        w0 = ow * sw - pw
        first[ow] = _first_in(w0, dw)
        valid[ow] = first[ow] < min(w0 + (kw - 1) * dw + 1, W)
    return phase, off, lpad, length, first, valid


@numba.njit(**_JIT)
def forward_nchw(x, out, ind, with_ind, kh, kw, sh, sw, ph, pw, dh, dw):
    P, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    phase, off, lpad, length, first, _ = _column_plan(W, OW, kw, sw, pw, dw)
    neg_inf = x.dtype.type(-np.inf)
    for pl in prange(P):
        xp = x[pl]
        # the plane split by column phase (column j * sw + r goes to split[r, :, j + lpad]), -inf outside: every
        # tap of a row of windows is then one contiguous run of the split buffer, and the loop over the output
        # columns below is a plain vector loop (loads, compares, selects) with no bounds tests
        split = np.empty((sw, H, length), x.dtype)
        for r in range(sw):
            for ih in range(H):
                row = xp[ih]
                srow = split[r, ih]
                for j in range(length):
                    col = (j - lpad) * sw + r
                    srow[j] = row[col] if col >= 0 and col < W else neg_inf
        for oh in range(OH):
            h0 = oh * sh - ph
            hs = _first_in(h0, dh)
            he = min(h0 + (kh - 1) * dh + 1, H)
            orow = out[pl, oh]
            for ow in range(OW):
                orow[ow] = neg_inf
            if with_ind:
                irow = ind[pl, oh]
                for ow in range(OW):
                    irow[ow] = hs * W + first[ow]
                for ih in range(hs, he, dh):
                    for b in range(kw):
                        srow = split[phase[b], ih]
                        o0 = off[b] + lpad
                        base = ih * W - pw + b * dw
                        for ow in range(OW):
                            v = srow[ow + o0]
                            m = orow[ow]
                            take = (v > m) | (v != v)
                            orow[ow] = v if take else m
                            irow[ow] = base + ow * sw if take else irow[ow]
            else:
                for ih in range(hs, he, dh):
                    for b in range(kw):
                        srow = split[phase[b], ih]
                        o0 = off[b] + lpad
                        for ow in range(OW):
                            v = srow[ow + o0]
                            m = orow[ow]
                            orow[ow] = v if (v > m) | (v != v) else m


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


@numba.njit(**_SERIAL)
def _row_valid(H, OH, kh, sh, ph, dh):
    """Whether each output row's window has a row inside the input."""
    valid = np.empty(OH, np.bool_)
    for oh in range(OH):
        h0 = oh * sh - ph
        valid[oh] = _first_in(h0, dh) < min(h0 + (kh - 1) * dh + 1, H)
    return valid


@numba.njit(**_JIT)
def backward_nchw(g, ind, gin, kh, kw, sh, sw, ph, pw, dh, dw):
    P, H, W = gin.shape
    OH, OW = g.shape[1], g.shape[2]
    HW = H * W
    vh = _row_valid(H, OH, kh, sh, ph, dh)
    vw = _column_plan(W, OW, kw, sw, pw, dw)[5]
    zero = gin.dtype.type(0)
    for pl in prange(P):
        # the plane is owned by this thread: its gradients are accumulated in output order (PyTorch's order),
        # with no other writer, so the sums are deterministic and bitwise PyTorch's for float32/float64
        gp = gin[pl].ravel()
        for e in range(HW):
            gp[e] = zero
        for oh in range(OH):
            if not vh[oh]:
                continue
            irow = ind[pl, oh]
            grow = g[pl, oh]
            for ow in range(OW):
                e = irow[ow]
                if vw[ow] and e >= 0 and e < HW:  # windows wholly in the padding pass nothing on
                    gp[e] += grow[ow]


@numba.njit(**_JIT)
def backward_nhwc(g, ind, gin, kh, kw, sh, sw, ph, pw, dh, dw):
    N, H, W, C = gin.shape
    OH, OW = g.shape[1], g.shape[2]
    ch, nh = _candidates(H, OH, kh, sh, ph, dh)
    cw, nw = _candidates(W, OW, kw, sw, pw, dw)
    zero = gin.dtype.type(0)
    for r in prange(N * H):
        # input row (n, ih): each pixel gathers, over the windows that contain it in increasing (oh, ow), the
        # gradients of those whose index names it; the channel loop is a branch-free select-add that vectorises
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


# -------------------------------------------------------------------- the torch glue (arguments already checked)
#
# A 3-D (C, H, W) input is pooled as a batch of one, in contiguous format (as PyTorch's 3-D pooling); a 4-D one in
# its suggested memory format: NCHW planes or NHWC rows (``_rules.memory_format``).


def _nchw_view(t4: torch.Tensor) -> np.ndarray:
    """A contiguous (N, C, H, W) tensor as a (planes, H, W) array."""
    n, c, h, w = t4.shape
    return t4.reshape(n * c, h, w).numpy()


def _nhwc_view(t4: torch.Tensor) -> np.ndarray:
    """A channels_last (N, C, H, W) tensor as its (N, H, W, C) storage."""
    return t4.permute(0, 2, 3, 1).numpy()


def _geometry(kernel_size, stride, padding, dilation):
    """The schema's int[2] lists (checked; an empty stride means the kernel size) and the kernels' 8 ints."""
    k, s, p, d = kernel_size, stride if len(stride) else kernel_size, padding, dilation
    return k, s, p, d, (k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])


def _forward(input, kernel_size, stride, padding, dilation, ceil_mode, with_ind):
    k, s, p, d, args = _geometry(kernel_size, stride, padding, dilation)
    oh, ow = pool_out_hw(input.shape[-2:], k, s, p, d, ceil_mode)
    fmt = memory_format(input)
    x4 = input.detach().unsqueeze(0) if input.dim() == 3 else input.detach()
    n, c = x4.shape[:2]
    out = torch.empty((n, c, oh, ow), dtype=input.dtype, memory_format=fmt)
    ind = torch.empty((n, c, oh, ow), dtype=torch.int64, memory_format=fmt)
    if out.numel() > 0:
        cdt = compute_dtype(input.dtype)
        x4 = x4.to(cdt).contiguous(memory_format=fmt)
        res = out if cdt == input.dtype else torch.empty(out.shape, dtype=cdt, memory_format=fmt)
        if fmt == torch.channels_last:
            ia = _nhwc_view(ind) if with_ind else np.empty((0, 0, 0, 0), np.int64)
            forward_nhwc(_nhwc_view(x4), _nhwc_view(res), ia, with_ind, *args)
        else:
            ia = _nchw_view(ind) if with_ind else np.empty((0, 0, 0), np.int64)
            forward_nchw(_nchw_view(x4), _nchw_view(res), ia, with_ind, *args)
        if res is not out:
            out.copy_(res)
    if input.dim() == 3:
        out, ind = out[0], ind[0]
    return out, ind


def max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _forward(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _forward(input, kernel_size, stride, padding, dilation, ceil_mode, False)[0]


def max_pool2d_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    args = _geometry(kernel_size, stride, padding, dilation)[-1]
    fmt = memory_format(input)
    gin = torch.empty(input.shape, dtype=input.dtype, memory_format=fmt)
    if gin.numel() == 0:
        return gin
    squeeze = input.dim() == 3
    g4 = grad_output.detach().unsqueeze(0) if squeeze else grad_output.detach()
    i4 = indices.unsqueeze(0) if squeeze else indices
    cdt = compute_dtype(input.dtype)
    g4 = g4.to(cdt).contiguous(memory_format=fmt)
    i4 = i4.contiguous(memory_format=fmt)
    gin4 = gin.unsqueeze(0) if squeeze else gin
    res = gin4 if cdt == input.dtype else torch.empty(gin4.shape, dtype=cdt, memory_format=fmt)
    if fmt == torch.channels_last:
        backward_nhwc(_nhwc_view(g4), _nhwc_view(i4), _nhwc_view(res), *args)
    else:
        backward_nchw(_nchw_view(g4), _nchw_view(i4), _nchw_view(res), *args)
    if res is not gin4:
        gin4.copy_(res)
    return gin
