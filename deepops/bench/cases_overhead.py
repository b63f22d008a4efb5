"""Benchmark workloads for the cost of a call itself (``deepops bench --ops overhead``): each op on a tiny input
(1x1x4x4 and the like), where the arithmetic is a few nanoseconds and the time is the path from Python to the
kernel and back: argument checks, the dispatcher, autograd, the Numba (or CUDA) entry.  Against the same call of
PyTorch in the same run; the README's table gives the difference per call (the goal: at most 15 us more than
torch on the CPU).

Inference rows run under ``torch.no_grad`` with inputs that do not require grad; "fwd+bwd" rows take the input's
(and the weight's) gradient through autograd, as a training step does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deepops

from .core import Workload, register

TINY = (1, 1, 4, 4)


def _maker(weight_shape=None):
    def make(device, dtype, gen):
        x = torch.randn(TINY, generator=gen).to(device=device, dtype=dtype)
        w = None if weight_shape is None else torch.randn(weight_shape, generator=gen).to(device=device, dtype=dtype)
        return x, w

    return make


def _infer(fn):
    def run(inputs):
        with torch.no_grad():
            return fn(*inputs)

    return run


def _fwd_bwd(fn):
    def run(inputs):
        x, w = inputs
        x = x.detach().requires_grad_()
        w = None if w is None else w.detach().requires_grad_()
        y = fn(x, w)
        return torch.autograd.grad(y, [t for t in (x, w) if t is not None], torch.ones_like(y))

    return run


# (name, weight shape, deepops fn(x, w), torch fn(x, w), with a fwd+bwd row)
CASES = [
    ("relu", None, lambda x, w: deepops.relu(x), lambda x, w: torch.relu(x), True),
    ("leaky_relu", None, lambda x, w: deepops.leaky_relu(x, 0.2), lambda x, w: F.leaky_relu(x, 0.2), False),
    ("conv2d 3x3", (1, 1, 3, 3), lambda x, w: deepops.conv2d(x, w, padding=1),
     lambda x, w: F.conv2d(x, w, padding=1), True),
    ("conv_transpose2d 2x2 s2", (1, 1, 2, 2), lambda x, w: deepops.conv_transpose2d(x, w, stride=2),
     lambda x, w: F.conv_transpose2d(x, w, stride=2), True),
    ("max_pool2d 2x2", None, lambda x, w: deepops.max_pool2d(x, 2), lambda x, w: F.max_pool2d(x, 2), True),
]

for name, wshape, ours, theirs, backward in CASES:
    for suffix, wrap in (("", _infer),) + ((("fwd+bwd ", _fwd_bwd),) if backward else ()):
        register(
            Workload(
                op="overhead",
                name=f"tiny {name} {suffix}{'x'.join(map(str, TINY))}",
                make_inputs=_maker(wshape),
                impls={"deepops": wrap(ours), "torch": wrap(theirs)},
            )
        )
