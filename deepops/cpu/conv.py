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

* Every kernel is one ``prange`` over independent output planes (``(n, c)`` for im2col/col2im, a channel for the
  bias), so threads never write the same memory and no atomics or reductions between threads are needed.
* The innermost loop runs along the output row (``q``) with the valid range computed once per row, so it has no
  bounds test and LLVM vectorises the stride-1 case; the padding is written as explicit zeros outside that range.
* ``col`` may be any strided 6-D view ``(n, c, r, s, p, q)``: the weight-gradient path passes a transposed view so
  that the batch ends up inside the GEMM's reduction dimension (one big GEMM rather than N small ones).

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


@numba.njit(**_JIT)
def im2col(x, R, S, sh, sw, ph, pw, dh, dw, col):
    """col[n, c, r, s, p, q] = x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside the input)."""
    N, C, H, W = x.shape
    P = col.shape[4]
    Q = col.shape[5]
    for nc in prange(N * C):
        n = nc // C
        c = nc - n * C
        for r in range(R):
            for s in range(S):
                off_w = s * dw - pw
                lo, hi = _valid_range(Q, sw, off_w, W)
                for p in range(P):
                    h = p * sh - ph + r * dh
                    dst = col[n, c, r, s, p]
                    if h < 0 or h >= H:
                        for q in range(Q):
                            dst[q] = 0
                        continue
                    src = x[n, c, h]
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
def col2im(col, sh, sw, ph, pw, dh, dw, out):
    """out[n, c, h, w] = sum of col[n, c, r, s, p, q] over the (r, s, p, q) that im2col read from (h, w)."""
    N, C, H, W = out.shape
    R = col.shape[2]
    S = col.shape[3]
    P = col.shape[4]
    Q = col.shape[5]
    for nc in prange(N * C):
        n = nc // C
        c = nc - n * C
        plane = out[n, c]
        for h in range(H):
            for w in range(W):
                plane[h, w] = 0
        for r in range(R):
            for s in range(S):
                off_w = s * dw - pw
                lo, hi = _valid_range(Q, sw, off_w, W)
                for p in range(P):
                    h = p * sh - ph + r * dh
                    if h < 0 or h >= H:
                        continue
                    src = col[n, c, r, s, p]
                    dst = plane[h]
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
