"""Shared glue for elementwise CPU kernels: memory layout and dtype handling.

PyTorch's elementwise ops return an output with the input's strides when the input is dense (contiguous,
channels_last, transposed, ...) and a contiguous output otherwise; ``torch.empty_like`` implements exactly that
rule, and the fake implementations use it too, so the real and fake outputs agree.  Once an output is allocated
like that, every input is brought to the same strides (a copy only when they differ) and the kernel sees all of
them as flat 1-D arrays over the same dense storage: one loop, no index arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch

# Numba has no bfloat16 and only partial float16 support: those are computed in float32 (as PyTorch's CPU
# kernels do for these types) and rounded once at the end.
_COMPUTE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def is_dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers one dense block of storage (any permutation of dimensions)."""
    return torch.empty_like(t).stride() == t.stride() or t.numel() <= 1


def flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense tensor's storage block, in memory order."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def like(t: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` with the strides of the dense tensor ``ref`` (and ``dtype``), copying only when needed."""
    dtype = dtype or t.dtype
    if t.stride() == ref.stride() and t.dtype == dtype:
        return t
    out = torch.empty_like(ref, dtype=dtype)
    out.copy_(t)
    return out


def run(kernel, inputs: list[torch.Tensor], *scalars) -> torch.Tensor:
    """Run ``kernel(*flat_inputs, *scalars, flat_out)`` over dense copies of ``inputs``; return the output tensor.

    The output has ``torch.empty_like(inputs[0])``'s layout and dtype.  float16/bfloat16 are computed in float32.
    """
    out = torch.empty_like(inputs[0])
    if out.numel() == 0:
        return out
    cdtype = _COMPUTE_DTYPE.get(out.dtype, out.dtype)
    arrays = [flat(like(t, out, cdtype)).numpy() for t in inputs]
    np_scalars = [np.dtype(str(cdtype).removeprefix("torch.")).type(s) for s in scalars]
    if cdtype == out.dtype:
        kernel(*arrays, *np_scalars, flat(out).numpy())
        return out
    tmp = torch.empty(out.numel(), dtype=cdtype)
    kernel(*arrays, *np_scalars, tmp.numpy())
    flat(out).copy_(tmp)
    return out


def run_inplace(kernel, inplace_kernel, t: torch.Tensor, *scalars) -> None:
    """Apply an elementwise op to ``t`` in place (directly on its storage where it is dense and float32/64)."""
    if t.numel() == 0:
        return
    if is_dense(t) and t.dtype not in _COMPUTE_DTYPE:
        np_scalars = [np.dtype(str(t.dtype).removeprefix("torch.")).type(s) for s in scalars]
        inplace_kernel(flat(t).numpy(), *np_scalars)
    else:
        t.copy_(run(kernel, [t], *scalars))
