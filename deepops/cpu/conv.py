"""The CPU kernels of 2-D convolution: Numba for the data movement (im2col, col2im, bias) around a BLAS GEMM, and
the torch glue that runs them.

Strategy
--------
A convolution is a matrix product once the input patches are laid out as columns ("im2col"):
``out[n, g] (Kg x PQ) = W[g] (Kg x Cg*R*S) @ col[n, g] (Cg*R*S x PQ)``.  The kernels here build those columns
(``im2col``), scatter them back for the input gradient (``col2im``) and reduce the bias gradient; the products
themselves go through ``torch.matmul`` on the buffers these kernels fill, i.e. through the MKL SGEMM/DGEMM that
PyTorch ships (the glue at the bottom of this module).  Writing a GEMM in Numba that competes with MKL's AVX-512
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

The threading interplay with the GEMM is described with the glue below.  ``cache=True`` keeps the compiled
code on disk between runs.
"""

from __future__ import annotations

import threading

import numba
import torch
from numba import prange

from .._rules import compute_dtype, conv_out_hw, conv_transpose_out_hw, memory_format

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

# -------------------------------------------------------------------- the torch glue (arguments already checked)
#
# * forward: im2col into a reused per-thread scratch buffer, laid out (N, G, Cg*R*S, P*Q), then one batched GEMM
#   ``W[g] @ col[n, g]`` through ``torch.matmul`` (MKL SGEMM/DGEMM), which writes the NCHW output directly; a 1x1,
#   stride-1, unpadded convolution skips im2col (the input already is the column matrix); bias by a Numba pass;
# * backward-input: the GEMM ``W[g]^T @ grad_out[n, g]`` into the scratch buffer, then col2im (a gather over input
#   rows: no atomics, deterministic);
# * backward-weight: im2col in the (Cg*R*S, N*P*Q) layout, so that a single GEMM per group sums over the batch too;
# * backward-bias: a reduction over (N, P, Q) per channel, accumulated in float64;
# * conv_transpose2d: the backward-input path with its input as ``grad_output``, plus the bias.
#
# Why the GEMM is MKL's and not a Numba loop: the arithmetic of a convolution is a GEMM, and MKL's AVX-512 kernels
# run it near the core's peak; a Numba loop cannot keep accumulators in vector registers across the reduction, so
# it stays load/store-bound at a fraction of that.  Threads: the Numba loops and MKL run one after the other on ONE
# OpenMP pool (PyTorch's; see ``deepops._threads`` for why two pools are 2-100x slower on a busy 2-core box), never
# nested.  float16/bfloat16 are computed in float32 and rounded once (``_rules.compute_dtype``).


_tls = threading.local()
_SCRATCH_KEEP_BYTES = 64 << 20


def _scratch(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat per-thread scratch buffer of at least ``numel`` elements, reused between calls.

    Reuse matters: a freshly allocated im2col buffer of a few MB costs a page fault per 4 KiB on first touch, which
    on small convolutions is more time than the arithmetic.  One buffer per dtype and thread (thread-local, so two
    threads running convolutions never share one); it only grows, up to ``_SCRATCH_KEEP_BYTES``: larger requests
    (big batches, where a page fault per 4 KiB is small next to the GEMM) get a buffer of their own, not kept.
    """
    if numel * torch.finfo(dtype).bits // 8 > _SCRATCH_KEEP_BYTES:
        return torch.empty(numel, dtype=dtype)
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    b = bufs.get(dtype)
    if b is None or b.numel() < numel:
        b = bufs[dtype] = torch.empty(max(numel, 1), dtype=dtype)
    return b[:numel]


def _is_pointwise(R, S, stride, padding, in_hw, out_hw):
    """A 1x1, stride-1, unpadded convolution whose output plane is its input plane: a plain GEMM, no im2col.

    The planes must be compared too: in a transposed convolution, output_padding makes the input plane of
    backward-input larger than its output plane even for a 1x1 kernel."""
    pointwise = R == 1 and S == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
    return pointwise and tuple(in_hw) == tuple(out_hw)


def _flat(t: torch.Tensor):
    """A contiguous tensor as a flat NumPy array (shared memory)."""
    return t.view(-1).numpy()


def _im2col(x, R, S, P, Q, stride, padding, dilation, batch_inside=False):
    """The im2col matrix of x (N, C, H, W) contiguous: a (N, C*R*S, P*Q) view of a scratch buffer, or with
    ``batch_inside`` a (C*R*S, N*P*Q) one (the layout of the weight gradient's GEMM)."""
    N, C = x.shape[0], x.shape[1]
    col = _scratch(N * C * R * S * P * Q, x.dtype)
    H, W = x.shape[2], x.shape[3]
    im2col(_flat(x), N, C, H, W, R, S, *stride, *padding, *dilation, P, Q, batch_inside, col.numpy())
    return col.view(C * R * S, N * P * Q) if batch_inside else col.view(N, C * R * S, P * Q)


def _conv_forward(x, w, stride, padding, dilation, groups):
    """conv2d of x (N, C, H, W) and w (K, Cg, R, S), both contiguous in the compute dtype: (N, K, P, Q) NCHW."""
    N, C, H, W = x.shape
    Kc, Cg, R, S = w.shape
    P, Q = conv_out_hw((H, W), (R, S), stride, padding, dilation)
    G = groups
    out = torch.empty((N, Kc, P, Q), dtype=x.dtype)
    if out.numel() == 0:
        return out
    if C == 0 or H * W == 0:  # an empty reduction, or every window in the padding: zeros
        return out.zero_()
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        col = x.view(N, G, Cg, H * W)
    else:
        col = _im2col(x, R, S, P, Q, stride, padding, dilation).view(N, G, Cg * R * S, P * Q)
    torch.matmul(w.view(G, Kc // G, Cg * R * S), col, out=out.view(N, G, Kc // G, P * Q))
    return out


def _conv_backward_input(go, w, input_size, stride, padding, dilation, groups):
    """dL/dinput (N, C, H, W) NCHW from go (N, K, P, Q) and w (K, Cg, R, S), both contiguous, compute dtype."""
    N, C, H, W = input_size
    Kc, Cg, R, S = w.shape
    P, Q = go.shape[2], go.shape[3]
    G = groups
    gx = torch.empty((N, C, H, W), dtype=go.dtype)
    if gx.numel() == 0:
        return gx
    if Kc == 0 or P * Q == 0:
        return gx.zero_()
    wt = w.view(G, Kc // G, Cg * R * S).transpose(1, 2)
    gov = go.view(N, G, Kc // G, P * Q)
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        torch.matmul(wt, gov, out=gx.view(N, G, Cg, H * W))
        return gx
    gcol = _scratch(N * C * R * S * P * Q, go.dtype).view(N, G, Cg * R * S, P * Q)
    torch.matmul(wt, gov, out=gcol)
    col2im(_flat(gcol), N, C, H, W, R, S, *stride, *padding, *dilation, P, Q, _flat(gx))
    return gx


def _conv_backward_weight(go, x, weight_size, stride, padding, dilation, groups):
    """dL/dweight (K, Cg, R, S) from go (N, K, P, Q) and x (N, C, H, W), both contiguous, compute dtype."""
    Kc, Cg, R, S = weight_size
    N, C, H, W = x.shape
    P, Q = go.shape[2], go.shape[3]
    G = groups
    gw = torch.empty((Kc, Cg, R, S), dtype=go.dtype)
    if gw.numel() == 0:
        return gw
    if N * P * Q == 0 or H * W == 0:  # nothing to sum over, or every window in the padding
        return gw.zero_()
    # (G, Kg, N*PQ): the batch goes inside the reduction dimension, so that one GEMM per group does the whole sum
    go_t = go.view(N, G, Kc // G, P * Q).permute(1, 2, 0, 3).reshape(G, Kc // G, N * P * Q)
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        col = x.view(N, C, H * W).transpose(0, 1).reshape(G, Cg, N * H * W)
    else:
        col = _im2col(x, R, S, P, Q, stride, padding, dilation, batch_inside=True).view(G, Cg * R * S, N * P * Q)
    torch.matmul(go_t, col.transpose(1, 2), out=gw.view(G, Kc // G, Cg * R * S))
    return gw


def _add_bias(out, bias):
    if bias is not None and out.numel():
        N, Kc = out.shape[0], out.shape[1]
        add_bias(_flat(out), N, Kc, out.numel() // max(N * Kc, 1), bias.numpy())


def _cpu_in(t, cdt):
    return t.detach().to(cdt).contiguous()


def _finish(out: torch.Tensor, dtype, fmt: torch.memory_format) -> torch.Tensor:
    """The computed NCHW result in the op's dtype and memory format (an empty one gets the strides the fake
    implementation's ``torch.empty(..., memory_format=fmt)`` has)."""
    return out.to(dtype=dtype).contiguous(memory_format=fmt)


def conv2d(input, weight, bias, stride, padding, dilation, groups):
    cdt = compute_dtype(input.dtype)
    out = _conv_forward(_cpu_in(input, cdt), _cpu_in(weight, cdt), stride, padding, dilation, groups)
    _add_bias(out, None if bias is None else _cpu_in(bias, cdt))
    return _finish(out, input.dtype, memory_format(input, weight))


def conv2d_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    cdt = compute_dtype(grad_output.dtype)
    gx = _conv_backward_input(
        _cpu_in(grad_output, cdt), _cpu_in(weight, cdt), list(input_size), stride, padding, dilation, groups
    )
    return _finish(gx, grad_output.dtype, memory_format(grad_output, weight))


def conv2d_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    cdt = compute_dtype(grad_output.dtype)
    gw = _conv_backward_weight(
        _cpu_in(grad_output, cdt), _cpu_in(input, cdt), list(weight_size), stride, padding, dilation, groups
    )
    return _finish(gw, grad_output.dtype, memory_format(grad_output, input))


def conv2d_backward_bias(grad_output):
    N, Kc = grad_output.shape[0], grad_output.shape[1]
    out = torch.zeros(Kc, dtype=torch.float64)
    if grad_output.numel():
        g = _cpu_in(grad_output, compute_dtype(grad_output.dtype))
        bias_grad(_flat(g), N, Kc, g.numel() // (N * Kc), out.numpy())
    return out.to(grad_output.dtype)


def conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation):
    cdt = compute_dtype(input.dtype)
    hw = conv_transpose_out_hw(input.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    size = [input.shape[0], weight.shape[1] * groups, *hw]
    out = _conv_backward_input(_cpu_in(input, cdt), _cpu_in(weight, cdt), size, stride, padding, dilation, groups)
    _add_bias(out, None if bias is None else _cpu_in(bias, cdt))
    return _finish(out, input.dtype, memory_format(input, weight))
