"""Benchmark workloads for ReLU and leaky ReLU: memory-bound, so judged in GB/s against copy bandwidth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deepops

from .core import Workload, register

SHAPES = [
    ((64, 256, 56, 56), True),  # a ResNet stage-1 activation at batch 64: 51 M elements
    ((16, 64, 112, 112), False),
    ((1 << 20,), False),  # 1 M elements, launch-latency bound on a GPU
]


def _maker(shape):
    def make(device, dtype, gen):
        x = torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        g = torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        return x, g

    return make


def _nbytes(inputs):
    x = inputs[0]
    return 2 * x.numel() * x.element_size()


for shape, quick in SHAPES:
    label = "x".join(map(str, shape))
    register(
        Workload(
            op="relu",
            name=f"relu {label}",
            make_inputs=_maker(shape),
            impls={"deepops": lambda i: deepops.relu(i[0]), "torch": lambda i: torch.relu(i[0])},
            bytes=_nbytes,
            dtypes=(torch.float32, torch.float16),
            quick=quick,
        )
    )
    register(
        Workload(
            op="relu",
            name=f"leaky_relu {label}",
            make_inputs=_maker(shape),
            impls={
                "deepops": lambda i: deepops.leaky_relu(i[0], 0.2),
                "torch": lambda i: F.leaky_relu(i[0], 0.2),
            },
            bytes=_nbytes,
            quick=False,
        )
    )
    register(
        Workload(
            op="relu",
            name=f"relu backward {label}",
            make_inputs=_maker(shape),
            impls={
                "deepops": lambda i: torch.ops.deepops.relu_backward(i[1], i[0]),
                "torch": lambda i: torch.ops.aten.threshold_backward(i[1], i[0], 0.0),
            },
            bytes=lambda i: 3 * i[0].numel() * i[0].element_size(),
            quick=False,
        )
    )
