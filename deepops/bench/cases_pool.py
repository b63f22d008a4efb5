"""Benchmark workloads for max_pool2d: memory-bound, so judged in GB/s and against F.max_pool2d in the same run.

The shapes of the speed goal: 8x64x56x56 with kernel 3 stride 2 (a ResNet stem pool) and 16x32x64x64 with kernel 2
stride 2, each NCHW and channels_last, forward (inference, under no_grad: deepops then skips the indices) and forward + backward (autograd: the indexed
forward, then the gradient).

Bytes (the minimal traffic, for GB/s): forward reads the input and writes the output; forward + backward also
writes and reads the int64 indices and the output gradient, and reads the input and writes its gradient once more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deepops

from .core import Workload, register

SHAPES = [((8, 64, 56, 56), 3, 2, 1), ((16, 32, 64, 64), 2, 2, 0)]  # (shape, kernel, stride, padding)


def _maker(shape, fmt, k, s, p):
    def make(device, dtype, gen):
        x = torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        x = x.contiguous(memory_format=fmt)
        out_shape = F.max_pool2d(x[:1], k, s, p).shape[1:]
        g = torch.randn((shape[0], *out_shape), generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        return x.requires_grad_(), g.contiguous(memory_format=fmt)

    return make


def _forward(pool, k, s, p):
    def run(inputs):
        with torch.no_grad():
            return pool(inputs[0], k, s, p)

    return run


def _forward_backward(pool, k, s, p):
    def run(inputs):
        x, g = inputs
        y = pool(x, k, s, p)
        return torch.autograd.grad(y, x, g)

    return run


def _bytes_fwd(inputs):
    x, g = inputs
    return (x.numel() + g.numel()) * x.element_size()


def _bytes_fwd_bwd(inputs):
    x, g = inputs
    es = x.element_size()
    # forward: read x, write y and indices; backward: read grad and indices, write grad_input
    return 2 * x.numel() * es + g.numel() * (2 * es + 16)


for shape, k, s, p in SHAPES:
    for fmt, fname in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "channels_last")):
        label = f"{'x'.join(map(str, shape))} k{k} s{s} {fname}"
        register(
            Workload(
                op="max_pool2d",
                name=f"max_pool2d {label}",
                make_inputs=_maker(shape, fmt, k, s, p),
                impls={"deepops": _forward(deepops.max_pool2d, k, s, p), "torch": _forward(F.max_pool2d, k, s, p)},
                bytes=_bytes_fwd,
                dtypes=(torch.float32, torch.float16),
                quick=fname == "NCHW",
            )
        )
        register(
            Workload(
                op="max_pool2d",
                name=f"max_pool2d fwd+bwd {label}",
                make_inputs=_maker(shape, fmt, k, s, p),
                impls={
                    "deepops": _forward_backward(deepops.max_pool2d, k, s, p),
                    "torch": _forward_backward(F.max_pool2d, k, s, p),
                },
                bytes=_bytes_fwd_bwd,
                quick=False,
            )
        )
