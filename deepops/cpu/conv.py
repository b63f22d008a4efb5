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
* The kernels take flat 1-D arrays and compute offsets themselves: taking a view of an array inside a ``prange``
  loop makes Numba increment and decrement the parent's reference count atomically, and two threads doing that on
  the same count serialise on its cache line (measured: im2col ran at a tenth of memcpy speed, with no gain from
  the second thread, before this change).
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


@numba.njit(**_JIT)
def im2col(x, N, C, H, W, R, S, sh, sw, ph, pw, dh, dw, P, Q, batch_inside, col):
    """The im2col planes of x (N, C, H, W) into col (planes, P, Q), both flat C-contiguous 1-D arrays:

    plane (n, c, r, s) holds x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside the input) and sits at index
    ((n*C + c)*R + r)*S + s, i.e. col is (N, C*R*S, P*Q), or with ``batch_inside`` at ((c*R + r)*S + s)*N + n,
    i.e. col is (C*R*S, N*P*Q), the weight gradient's layout.  One ``prange`` over all N*C*R*S planes, so even a
    single-image, single-channel input keeps every thread busy.
    """
    CRS = C * R * S
    for i in prange(N * CRS):
        n = i // CRS
        rem = i - n * CRS
        c = rem // (R * S)
        rs = rem - c * (R * S)
        r = rs // S
        s = rs - r * S
        if batch_inside:
            plane = (rem * N + n) * (P * Q)
        else:
            plane = (n * CRS + rem) * (P * Q)
        off_w = s * dw - pw
        lo, hi = _valid_range(Q, sw, off_w, W)
        xbase = (n * C + c) * H * W
        for p in range(P):
            h = p * sh - ph + r * dh
            d = plane + p * Q
            if h < 0 or h >= H:
                for q in range(Q):
                    col[d + q] = 0
                continue
            src = xbase + h * W + off_w
            for q in range(lo):
                col[d + q] = 0
            if sw == 1:
                for q in range(lo, hi):
                    col[d + q] = x[src + q]
            else:
                for q in range(lo, hi):
                    col[d + q] = x[src + q * sw]
            for q in range(hi, Q):
                col[d + q] = 0


@numba.njit(**_JIT)
def col2im(col, N, C, H, W, R, S, sh, sw, ph, pw, dh, dw, P, Q, out):
    """out[n, c, h, w] = sum of the col entries that im2col read from (h, w); col is (N*C*R*S, P, Q), out is
    (N, C, H, W), both flat 1-D.

    A gather, one ``prange`` over all N*C*H output rows: row h of plane (n, c) receives, for each kernel row r with
    h = p*sh - ph + r*dh for an integer p in [0, P), the rows col[(n, c, r, s), p] shifted by s*dw - pw.  Threads
    write disjoint rows, so there are no races and no atomics, and the result does not depend on the thread count.
    """
    for i in prange(N * C * H):
        nc = i // H
        h = i - nc * H
        d = (nc * H + h) * W
        for w in range(W):
            out[d + w] = 0
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
                src = (((nc * R + r) * S + s) * P + p) * Q
                dd = d + off_w
                if sw == 1:
                    for q in range(lo, hi):
                        out[dd + q] += col[src + q]
                else:
                    for q in range(lo, hi):
                        out[dd + q * sw] += col[src + q]


@numba.njit(**_JIT)
def bias_grad(g, N, K, L, out):
    """out[k] = sum over n, i of g[n, k, i] (g: (N, K, L) flat), accumulated in float64."""
    for k in prange(K):
        acc = 0.0
        for n in range(N):
            base = (n * K + k) * L
            for i in range(L):
                acc += g[base + i]
        out[k] = acc


@numba.njit(**_JIT)
def add_bias(out, N, K, L, bias):
    """out[n, k, i] += bias[k] for out (N, K, L) flat."""
    for nk in prange(N * K):
        b = bias[nk % K]
        base = nk * L
        for i in range(L):
            out[base + i] += b
