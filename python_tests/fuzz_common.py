"""Strategies shared by the differential fuzz tests: devices, memory layouts and random values (tolerances and
the layouts themselves are conftest's)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from conftest import HAS_CUDA

DEVICE_CHOICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])

#: the memory layouts the fuzzers draw from (conftest.LAYOUTS names them; conftest.layout makes them)
layouts = st.sampled_from(["contiguous", "channels_last", "strided", "last_two_swapped"])
devices = st.sampled_from(DEVICE_CHOICES)


def rand(shape, dtype, device, seed, scale=1.0, specials=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if specials and x.numel() >= 4:
        flat = x.view(-1)
        idx = torch.randint(0, x.numel(), (4,), generator=g)
        flat[idx] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0], dtype=torch.float64)
    return x.to(dtype=dtype, device=device)
