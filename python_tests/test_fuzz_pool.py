"""Differential fuzzing of max_pool2d against torch.nn.functional.max_pool2d: hypothesis draws batch (0 included),
channels, sizes (size-1 included), kernel, stride, padding (up to half the kernel), dilation, ceil_mode, 3-D or 4-D
input, dtype, memory layout and special values (NaN, +-inf); values and indices must be identical, and the
gradient identical too (float32/float64: both sum the same terms in the same order)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import deepops  # noqa: E402
from conftest import layout  # noqa: E402
from fuzz_common import devices, layouts, rand  # noqa: E402

pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731
dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


@given(n=st.integers(0, 3), c=st.integers(1, 4), hw=pair(1, 13), kernel=pair(1, 4), stride=st.one_of(st.none(), pair(1, 4)),
       pad_frac=pair(0, 2), dilation=pair(1, 3), ceil_mode=st.booleans(), unbatched=st.booleans(), dtype=dtypes,
       kind=layouts, device=devices, specials=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fuzz_max_pool2d(n, c, hw, kernel, stride, pad_frac, dilation, ceil_mode, unbatched, dtype, kind, device,
                         specials, seed):
    padding = tuple(min(p, k // 2) for p, k in zip(pad_frac, kernel))
    shape = (c, *hw) if unbatched else (n, c, *hw)
    x = layout(rand(shape, dtype, device, seed, specials=specials), kind)
    args = (kernel, stride, padding, dilation, ceil_mode)
    try:
        ref, ref_idx = F.max_pool2d(x, *args, return_indices=True)
    except RuntimeError:  # PyTorch refuses the geometry (output size < 1): so must we, with an exception
        with pytest.raises((RuntimeError, ValueError)):
            deepops.max_pool2d(x, *args, return_indices=True)
        return
    out, idx = deepops.max_pool2d(x, *args, return_indices=True)
    exact = dict(rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out, ref, **exact)
    torch.testing.assert_close(idx, ref_idx, rtol=0, atol=0)
    torch.testing.assert_close(deepops.max_pool2d(x, *args), ref, **exact)
    # gradients: skip geometries with a window entirely in the padding (possible only with dilation; deepops gives
    # such a window no gradient, PyTorch sends it to an arbitrary element: documented in deepops/ops/pool.py)
    if specials or dtype not in (torch.float32, torch.float64) or not ref.numel() or dilation != (1, 1):
        return
    a, b = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    g = rand(ref.shape, dtype, device, seed + 1)
    torch.autograd.backward(deepops.max_pool2d(a, *args), g)
    torch.autograd.backward(F.max_pool2d(b, *args), g)
    torch.testing.assert_close(a.grad, b.grad, **exact)
