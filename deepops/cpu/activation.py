"""Numba CPU kernels for ReLU and leaky ReLU.

Strategy: the Python side hands each kernel flat, dense 1-D arrays (see ``deepops.ops._layout``), so every kernel is
one ``prange`` loop that Numba splits into a contiguous chunk per thread and LLVM vectorises.  The loops are
written so that NaN propagates exactly as in PyTorch (``v > 0`` is false for NaN, so the NaN is passed on by the
leaky form; ReLU zeroes only ``v < 0``, which keeps NaN and -0.0 as ``torch.relu`` does).  float16 and bfloat16 are computed in float32 by the caller, which is
also what PyTorch's CPU kernels do.  ``cache=True`` keeps the compiled code on disk between runs.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

_JIT = dict(parallel=True, cache=True, nogil=True, boundscheck=False)


@numba.njit(**_JIT)
def relu_forward(x, out):
    for i in prange(x.size):
        v = x[i]
        # as PyTorch: negatives become 0; NaN and -0.0 pass through unchanged
        out[i] = 0 if v < 0 else v


@numba.njit(**_JIT)
def relu_forward_inplace(x):
    for i in prange(x.size):
        if x[i] < 0:
            x[i] = 0


@numba.njit(**_JIT)
def relu_backward(grad, result, out):
    # PyTorch's threshold_backward: zero where the result is <= 0 (NaN results pass the gradient on)
    for i in prange(grad.size):
        out[i] = 0 if result[i] <= 0 else grad[i]


@numba.njit(**_JIT)
def leaky_relu_forward(x, slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@numba.njit(**_JIT)
def leaky_relu_forward_inplace(x, slope):
    for i in prange(x.size):
        v = x[i]
        if not v > 0:
            x[i] = v * slope


@numba.njit(**_JIT)
def leaky_relu_backward(grad, x, slope, out):
    for i in prange(grad.size):
        out[i] = grad[i] if x[i] > 0 else grad[i] * slope


def as_numba_scalar(value: float, dtype: np.dtype):
    """The slope in the array's own precision, so that float32 arrays are not promoted to float64."""
    return dtype.type(value)
