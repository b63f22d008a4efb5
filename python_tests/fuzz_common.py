"""Strategies shared by the differential fuzz tests: devices, memory layouts and random values (the tolerances are
conftest's)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from conftest import HAS_CUDA

DEVICE_CHOICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])

def layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values in another memory layout: contiguous, channels_last, a strided slice, or transposed."""
    if kind == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if kind == "strided" and t.dim() >= 1:
        big = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
        big[..., ::2] = t
        return big[..., ::2]
    if kind == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t.contiguous()


layouts = st.sampled_from(["contiguous", "channels_last", "strided", "transposed"])
devices = st.sampled_from(DEVICE_CHOICES)


def rand(shape, dtype, device, seed, scale=1.0, specials=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    if specials and x.numel() >= 4:
        flat = x.view(-1)
        idx = torch.randint(0, x.numel(), (4,), generator=g)
        flat[idx] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0], dtype=torch.float64)
    return x.to(dtype=dtype, device=device)
