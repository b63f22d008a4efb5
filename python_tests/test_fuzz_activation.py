"""Differential fuzzing of relu / leaky_relu against PyTorch: random shapes (empty and size-1 dims included),
dtypes, layouts, slopes and special values; forward and backward, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import deepops  # noqa: E402
from conftest import layout  # noqa: E402
from fuzz_common import devices, layouts, rand  # noqa: E402

shapes = st.lists(st.integers(0, 9), min_size=0, max_size=4).map(tuple)
float_dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])


@given(shape=shapes, dtype=float_dtypes, kind=layouts, device=devices, seed=st.integers(0, 2**31 - 1),
       slope=st.one_of(st.just(0.01), st.floats(-3, 3, allow_nan=False)), specials=st.booleans())
def test_fuzz_relu_and_leaky_relu(shape, dtype, kind, device, seed, slope, specials):
    x = layout(rand(shape, dtype, device, seed, scale=3, specials=specials), kind)
    exact = dict(rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(deepops.relu(x), torch.relu(x), **exact)
    torch.testing.assert_close(deepops.leaky_relu(x, slope), F.leaky_relu(x, slope), **exact)
    if x.numel() and not specials:
        a = x.detach().clone().requires_grad_()
        b = x.detach().clone().requires_grad_()
        g = rand(shape, dtype, device, seed + 1)
        deepops.leaky_relu(a, slope).backward(g)
        F.leaky_relu(b, slope).backward(g)
        torch.testing.assert_close(a.grad, b.grad, **exact)
        a.grad = b.grad = None
        deepops.relu(a).backward(g)
        torch.relu(b).backward(g)
        torch.testing.assert_close(a.grad, b.grad, **exact)
