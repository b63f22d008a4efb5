"""Numba CPU kernels for 2-D convolution: the data movement (im2col, col2im, bias), around a BLAS GEMM.

Strategy
--------
A convolution is a matrix product once the input patches are laid out as columns ("im2col"):
``out[n, g] (Kg x PQ) = W[g] (Kg x Cg*R*S) @ col[n, g] (Cg*R*S x PQ)``.  The kernels here build those columns
(``im2col``), scatter them back for the input gradient (``col2im``) and reduce the bias gradient; the products
themselves go through ``torch.matmul`` on the buffers these kernels fill, i.e. through the MKL SGEMM/DGEMM that
PyTorch ships (``deepops.ops.conv`` does that glue).  Writing a GEMM in Numba that competes with MKL's AVX-512
micro-kernels is not realistic; the part of a convolution where a hand-written kernel pays on a CPU is the data
layout, and that is what lives here.

* Every kernel is one ``prange`` over independent pieces of its output (im2col: the N*C*R*S planes; col2im: the
  N*C*H input rows, as a gather; bias: the channels), so threads never write the same memory, no atomics or
  reductions between threads are needed, and results do not depend on the thread count.
* The innermost loop runs along the output row (``q``) with the valid range computed once per row, so it has no
  bounds test and LLVM vectorises the stride-1 case; the padding is written as explicit zeros outside that range.
* im2col writes either layout contiguously: ``(N, C*R*S, P*Q)`` for the forward (one GEMM per image gives NCHW
  directly) or ``(C*R*S, N*P*Q)`` for the weight gradient (the batch inside the GEMM's reduction dimension: one
  big GEMM rather than N small ones and a sum).

The threading interplay with the GEMM is described in ``deepops.ops.conv``.  ``cache=True`` keeps the compiled
code on disk between runs.
"""

from __future__ import annotations

import numba
from numba import prange

_JIT = dict(parallel=True, cache=True, nogil=True, boundscheck=False, fastmath=False)


@numba.njit(inline="always")
def _valid_range(Q, sw, off, W):
    """The output columns q in [lo, hi) for which 0 <= q * sw + off < W."""
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    hi = 0
    if W - off > 0:
        hi = (W - off + sw - 1) // sw
    if hi > Q:
        hi = Q
    if lo > hi:
        lo = hi
    return lo, hi


@numba.njit(inline="always")
def _fill_row(dst, src, lo, hi, sw, off_w):
    """dst[q] = src[q * sw + off_w] for q in [lo, hi), 0 elsewhere."""
    Q = dst.shape[0]
    for q in range(lo):
        dst[q] = 0
    if sw == 1:
        for q in range(lo, hi):
            dst[q] = src[q + off_w]
    else:
        for q in range(lo, hi):
            dst[q] = src[q * sw + off_w]
    for q in range(hi, Q):
        dst[q] = 0


@numba.njit(**_JIT)
def im2col(x, R, S, sh, sw, ph, pw, dh, dw, batch_inside, col):
    """The im2col planes of x (N, C, H, W) into col (planes, P, Q), both C-contiguous:

    plane (n, c, r, s) holds x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside the input) and sits at index
    ((n*C + c)*R + r)*S + s, i.e. col is (N, C*R*S, P*Q), or with ``batch_inside`` at ((c*R + r)*S + s)*N + n,
    i.e. col is (C*R*S, N*P*Q), the weight gradient's layout.  One ``prange`` over all N*C*R*S planes, so even a
    single-image, single-channel input keeps every thread busy.
    """
    N, C, H, W = x.shape
    P = col.shape[1]
    Q = col.shape[2]
    for i in prange(N * C * R * S):
        n = i // (C * R * S)
        rem = i - n * (C * R * S)
        c = rem // (R * S)
        rs = rem - c * (R * S)
        r = rs // S
        s = rs - r * S
        plane = col[rem * N + n if batch_inside else n * (C * R * S) + rem]
        off_w = s * dw - pw
        lo, hi = _valid_range(Q, sw, off_w, W)
        for p in range(P):
            h = p * sh - ph + r * dh
            dst = plane[p]
            if h < 0 or h >= H:
                for q in range(Q):
                    dst[q] = 0
            else:
                _fill_row(dst, x[n, c, h], lo, hi, sw, off_w)


@numba.njit(**_JIT)
def col2im(col, R, S, sh, sw, ph, pw, dh, dw, out):
    """out[n, c, h, w] = sum of the col entries that im2col read from (h, w); col is (N*C*R*S, P, Q).

    A gather, one ``prange`` over all N*C*H output rows: row h of plane (n, c) receives, for each kernel row r with
    h = p*sh - ph + r*dh for an integer p in [0, P), the rows col[(n, c, r, s), p] shifted by s*dw - pw.  Threads
    write disjoint rows, so there are no races and no atomics, and the result does not depend on the thread count.
    """
    N, C, H, W = out.shape
    P = col.shape[1]
    Q = col.shape[2]
    for i in prange(N * C * H):
        nc = i // H
        h = i - nc * H
        dst = out[nc // C, nc - (nc // C) * C, h]
        for w in range(W):
            dst[w] = 0
        for r in range(R):
            t = h + ph - r * dh
            if t < 0 or t % sh != 0:
                continue
            p = t // sh
            if p >= P:
                continue
            for s in range(S):
                off_w = s * dw - pw
                lo, hi = _valid_range(Q, sw, off_w, W)
                src = col[(nc * R + r) * S + s, p]
                if sw == 1:
                    for q in range(lo, hi):
                        dst[q + off_w] += src[q]
                else:
                    for q in range(lo, hi):
                        dst[q * sw + off_w] += src[q]


@numba.njit(**_JIT)
def bias_grad(g, out):
    """out[k] = sum over n, p, q of g[n, k, p, q] (g: (N, K, PQ) contiguous), accumulated in float64."""
    N, K, L = g.shape
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            row = g[n, k]
            for i in range(L):
                acc += row[i]
        out[k] = acc


@numba.njit(**_JIT)
def add_bias(out, bias):
    """out[n, k, :] += bias[k] for out (N, K, PQ) contiguous."""
    N, K, L = out.shape
    for nk in prange(N * K):
        n = nk // K
        k = nk - n * K
        b = bias[k]
        row = out[n, k]
        for i in range(L):
            row[i] += b
