"""The CPU kernels of ReLU and leaky ReLU: Numba loops, and the torch glue that runs them.

Strategy: the glue (at the bottom) hands each Numba kernel flat, dense 1-D arrays, so every kernel is
one ``prange`` loop that Numba splits into a contiguous chunk per thread and LLVM vectorises.  The loops are
written so that NaN propagates exactly as in PyTorch (``v > 0`` is false for NaN, so the NaN is passed on by the
leaky form; ReLU zeroes only ``v < 0``, which keeps NaN and -0.0 as ``torch.relu`` does).  float16 and bfloat16 are computed in float32 by the glue, which is
also what PyTorch's CPU kernels do.  ``cache=True`` keeps the compiled code on disk between runs.

Memory layout (the glue): PyTorch's elementwise ops return an output with the input's strides when the input is
dense (contiguous, channels_last, transposed, ...) and a contiguous output otherwise; ``torch.empty_like``
implements exactly that rule, and the fake implementations use it too, so the real and fake outputs agree.  Once an
output is allocated like that, every input is brought to the same strides (a copy only when they differ) and the
kernel sees all of them as flat 1-D arrays over the same dense storage: one loop, no index arithmetic.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange

from .._rules import compute_dtype

_JIT = dict(parallel=True, cache=True, nogil=True, boundscheck=False)


@numba.njit(**_JIT)
def _relu(x, out):
    for i in prange(x.size):
        v = x[i]
        # as PyTorch: negatives become 0; NaN and -0.0 pass through unchanged
        out[i] = 0 if v < 0 else v


@numba.njit(**_JIT)
def _relu_inplace(x):
    for i in prange(x.size):
        if x[i] < 0:
            x[i] = 0


@numba.njit(**_JIT)
def _relu_grad(grad, result, out):
    # PyTorch's threshold_backward: zero where the result is <= 0 (NaN results pass the gradient on)
    for i in prange(grad.size):
        out[i] = 0 if result[i] <= 0 else grad[i]


@numba.njit(**_JIT)
def _leaky(x, slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > 0 else v * slope


@numba.njit(**_JIT)
def _leaky_inplace(x, slope):
    for i in prange(x.size):
        v = x[i]
        if not v > 0:
            x[i] = v * slope


@numba.njit(**_JIT)
def _leaky_grad(grad, x, slope, out):
    for i in prange(grad.size):
        out[i] = grad[i] if x[i] > 0 else grad[i] * slope


# ------------------------------------------------------------------------------- the torch glue (checked arguments)


def _is_dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers one dense block of storage (any permutation of dimensions)."""
    return torch.empty_like(t).stride() == t.stride() or t.numel() <= 1


def _flat(t: torch.Tensor) -> np.ndarray:
    """A 1-D NumPy view of a dense tensor's storage block, in memory order."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset()).numpy()


def _like(t: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` with the strides of the dense tensor ``ref`` and ``dtype``, copying only when needed."""
    if t.stride() == ref.stride() and t.dtype == dtype:
        return t
    out = torch.empty_like(ref, dtype=dtype)
    out.copy_(t)
    return out


def _scalars(values, dtype: torch.dtype) -> list:
    """Scalars in the arrays' own precision, so that float32 arrays are not promoted to float64."""
    return [np.dtype(str(dtype).removeprefix("torch.")).type(v) for v in values]


def _run(kernel, inputs: list[torch.Tensor], *scalars) -> torch.Tensor:
    """``kernel(*flat_inputs, *scalars, flat_out)`` over dense copies of ``inputs``; returns the output, which has
    ``torch.empty_like(inputs[0])``'s layout and dtype."""
    out = torch.empty_like(inputs[0])
    if out.numel() == 0:
        return out
    cdtype = compute_dtype(out.dtype)
    arrays = [_flat(_like(t, out, cdtype)) for t in inputs]
    if cdtype == out.dtype:
        kernel(*arrays, *_scalars(scalars, cdtype), _flat(out))
        return out
    tmp = torch.empty(out.numel(), dtype=cdtype)
    kernel(*arrays, *_scalars(scalars, cdtype), tmp.numpy())
    out.as_strided((out.numel(),), (1,), out.storage_offset()).copy_(tmp)
    return out


def _run_inplace(kernel, inplace_kernel, t: torch.Tensor, *scalars) -> None:
    """An elementwise op applied to ``t`` in place (directly on its storage where it is dense and float32/64)."""
    if t.numel() == 0:
        return
    if _is_dense(t) and compute_dtype(t.dtype) == t.dtype:
        inplace_kernel(_flat(t), *_scalars(scalars, t.dtype))
    else:
        t.copy_(_run(kernel, [t], *scalars))


def relu(self):
    return _run(_relu, [self])


def relu_(self):
    _run_inplace(_relu, _relu_inplace, self)


def relu_backward(grad, result):
    return _run(_relu_grad, [grad, result])


def leaky_relu(self, negative_slope):
    return _run(_leaky, [self], negative_slope)


def leaky_relu_(self, negative_slope):
    _run_inplace(_leaky, _leaky_inplace, self, negative_slope)


def leaky_relu_backward(grad, self, negative_slope):
    # the output takes self's layout (grad may be an expanded or strided view)
    return _run(lambda x, g, s, out: _leaky_grad(g, x, s, out), [self, grad], negative_slope)
