"""One small forward-and-backward workload per op, shared by the reliability tests (memory, reference cycles,
threads, determinism).  ``CASES[name](device)`` returns a function that runs the op once on fixed inputs and returns
its outputs (and gradients) as a list of tensors."""

from __future__ import annotations

from typing import Callable

import torch

import deepops
from conftest import layout

CASES: dict[str, Callable[[str], Callable[[], list[torch.Tensor]]]] = {}


def case(name: str):
    def deco(fn):
        CASES[name] = fn
        return fn

    return deco


def _fwd_bwd(fn, inputs: list[torch.Tensor], grad_seed: int = 1):
    """A runner for fn(*inputs): forward, then gradients of every floating input against a fixed random cotangent."""
    gen = torch.Generator().manual_seed(grad_seed)
    out0 = fn(*inputs)
    g = torch.randn(out0.shape, generator=gen, dtype=out0.dtype).to(out0.device)

    def run():
        leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
        y = fn(*leaves)
        diff = [t for t in leaves if t.requires_grad]
        grads = torch.autograd.grad(y, diff, g)
        return [y.detach(), *grads]

    return run


def _randn(*shape, device, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device)


@case("relu")
def _relu(device):
    return _fwd_bwd(deepops.relu, [_randn(4, 8, 16, 16, device=device)])


@case("leaky_relu")
def _leaky(device):
    return _fwd_bwd(lambda x: deepops.leaky_relu(x, 0.2), [_randn(4, 8, 16, 16, device=device)])


@case("relu_inplace")
def _relu_inplace(device):
    x = _randn(4, 8, 16, 16, device=device)

    def run():
        y = x.clone()
        deepops.relu(y, inplace=True)
        return [y]

    return run


def _boxes(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * 40 + 1
    return torch.cat([xy, xy + wh], 1).to(device), torch.rand(n, generator=g).to(device)


@case("nms")
def _nms(device):
    boxes, scores = _boxes(500, device)
    return lambda: [deepops.nms(boxes, scores, 0.5)]


@case("batched_nms")
def _batched_nms(device):
    boxes, scores = _boxes(500, device)
    idxs = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(3)).to(device)
    return lambda: [deepops.batched_nms(boxes, scores, idxs, 0.5)]


@case("box_iou")
def _box_iou(device):
    a, _ = _boxes(40, device, seed=1)
    b, _ = _boxes(30, device, seed=2)
    return _fwd_bwd(deepops.box_iou, [a, b])


@case("max_pool2d")
def _max_pool2d(device):
    return _fwd_bwd(lambda x: deepops.max_pool2d(x, 3, 2, 1), [_randn(2, 4, 11, 10, device=device)])


@case("max_pool2d_channels_last")
def _max_pool2d_cl(device):
    x = layout(_randn(2, 8, 8, 8, device=device), "channels_last")
    return _fwd_bwd(lambda t: deepops.max_pool2d(t, 2, ceil_mode=True), [x])


@case("max_pool2d_indices")
def _max_pool2d_indices(device):
    x = _randn(2, 3, 9, 7, device=device)
    return lambda: list(deepops.max_pool2d(x, (3, 2), (2, 1), (1, 1), (1, 2), return_indices=True))


@case("conv2d")
def _conv2d(device):
    # grouped, strided, dilated, with bias: every kernel (im2col, GEMM, col2im, bias) and all three gradients
    x = _randn(4, 6, 17, 15, device=device, seed=1)
    w = _randn(8, 3, 3, 3, device=device, seed=2)
    b = _randn(8, device=device, seed=3)
    return _fwd_bwd(lambda x, w, b: deepops.conv2d(x, w, b, (2, 1), 1, (1, 2), 2), [x, w, b])


@case("conv2d_channels_last")
def _conv2d_cl(device):
    x = layout(_randn(2, 16, 12, 12, device=device, seed=4), "channels_last")
    w = _randn(16, 16, 3, 3, device=device, seed=5)
    return _fwd_bwd(lambda x, w: deepops.conv2d(x, w, None, 1, "same"), [x, w])


@case("conv_transpose2d")
def _conv_transpose2d(device):
    x = _randn(3, 8, 7, 7, device=device, seed=6)
    w = _randn(8, 4, 4, 4, device=device, seed=7)
    b = _randn(4, device=device, seed=8)
    return _fwd_bwd(lambda x, w, b: deepops.conv_transpose2d(x, w, b, 2, 1), [x, w, b])
