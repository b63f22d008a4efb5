"""Benchmark workloads for conv2d and conv_transpose2d: compute-bound, judged in TFLOP/s and against
``torch.nn.functional`` (oneDNN on the CPU, cuDNN on the GPU) in the same run.

* The five goal shapes (forward, and forward+backward: the three gradients), all ``quick``: on the CPU in float32
  (16-bit rows run on the CPU only when ``--dtype`` asks for them), on the GPU in float32, float16 and bfloat16 -
  the GPU goal is >= 0.8x cuDNN in 16-bit and >= 0.7x in float32 with TF32 off, ahead of cuDNN on the few-channel
  first layers among them (C_in 1 and 3).
* AlexNet's five convolutions, ResNet-18's 3x3 stages and ResNet-50's distinct convolutions (the 7x7 stem, the
  bottlenecks' 1x1 and 3x3 layers, the strided 1x1 shortcuts) at batch 64 (GPU-sized: CUDA only), float32 with TF32
  off (``torch.backends.cudnn.allow_tf32 = False`` is set for float32 CUDA runs, which turns TF32 off for both
  sides), float16 and bfloat16.
* conv_transpose2d of a DCGAN-like generator layer, at GPU size and at CPU size; the CPU-sized one (a few
  milliseconds on 2 cores) is ``quick``, so that ``deepops bench --quick`` times conv_transpose2d too.

FLOPs: 2 * N * C_out * P * Q * (C_in / groups) * kH * kW for a forward pass; the backward pass does twice that
(input and weight gradients), so forward+backward counts three times the forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import deepops

from .core import Workload, register

HALF = (torch.float16, torch.bfloat16)

# (N, C, H, W, C_out, k, stride, pad): the shapes of the CPU speed goal
CPU_GOAL = [
    (8, 3, 64, 64, 16, 3, 1, 1),
    (8, 16, 32, 32, 32, 3, 1, 1),
    (1, 1, 256, 256, 8, 5, 1, 2),
    (4, 64, 27, 27, 192, 5, 1, 2),
    (8, 3, 128, 128, 64, 11, 4, 2),
]
ALEXNET = [
    (64, 3, 224, 224, 64, 11, 4, 2),
    (64, 64, 27, 27, 192, 5, 1, 2),
    (64, 192, 13, 13, 384, 3, 1, 1),
    (64, 384, 13, 13, 256, 3, 1, 1),
    (64, 256, 13, 13, 256, 3, 1, 1),
]
RESNET18_3X3 = [
    (64, 64, 56, 56, 64, 3, 1, 1),
    (64, 128, 28, 28, 128, 3, 1, 1),
    (64, 256, 14, 14, 256, 3, 1, 1),
    (64, 512, 7, 7, 512, 3, 1, 1),
]
# ResNet-50 (torchvision's v1.5: the stride on the 3x3), every distinct convolution once: the stem, then per stage
# the bottleneck's 1x1 reduce (first block's and the later blocks' input widths), its 3x3 (strided in the first
# block of stages 2-4) and 1x1 expand, and the 1x1 shortcut of the first block
RESNET50 = [
    (64, 3, 224, 224, 64, 7, 2, 3),
    (64, 64, 56, 56, 64, 1, 1, 0), (64, 256, 56, 56, 64, 1, 1, 0), (64, 64, 56, 56, 64, 3, 1, 1),
    (64, 64, 56, 56, 256, 1, 1, 0),
    (64, 256, 56, 56, 128, 1, 1, 0), (64, 512, 28, 28, 128, 1, 1, 0), (64, 128, 56, 56, 128, 3, 2, 1),
    (64, 128, 28, 28, 128, 3, 1, 1), (64, 128, 28, 28, 512, 1, 1, 0), (64, 256, 56, 56, 512, 1, 2, 0),
    (64, 512, 28, 28, 256, 1, 1, 0), (64, 1024, 14, 14, 256, 1, 1, 0), (64, 256, 28, 28, 256, 3, 2, 1),
    (64, 256, 14, 14, 256, 3, 1, 1), (64, 256, 14, 14, 1024, 1, 1, 0), (64, 512, 28, 28, 1024, 1, 2, 0),
    (64, 1024, 14, 14, 512, 1, 1, 0), (64, 2048, 7, 7, 512, 1, 1, 0), (64, 512, 14, 14, 512, 3, 2, 1),
    (64, 512, 7, 7, 512, 3, 1, 1), (64, 512, 7, 7, 2048, 1, 1, 0), (64, 1024, 14, 14, 2048, 1, 2, 0),
]
GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _label(s):
    N, C, H, W, K, k, st, p = s
    return f"{N}x{C}x{H}x{W}->{K} k{k} s{st} p{p}"


def _maker(s, backward: bool, transposed: bool = False):
    N, C, H, W, K, k, st, p = s

    def make(device, dtype, gen):
        if device.type == "cuda" and dtype == torch.float32:
            torch.backends.cudnn.allow_tf32 = False  # the goal is float32 on FFMA, for both sides
        x = torch.randn(N, C, H, W, generator=gen).to(device=device, dtype=dtype)
        wshape = (C, K, k, k) if transposed else (K, C, k, k)
        w = (torch.randn(wshape, generator=gen) / (C * k * k) ** 0.5).to(device=device, dtype=dtype)
        b = torch.randn(K, generator=gen).to(device=device, dtype=dtype)
        if backward:
            for t in (x, w, b):
                t.requires_grad_()
            fn = F.conv_transpose2d if transposed else F.conv2d
            with torch.no_grad():
                shape = fn(x, w, b, st, p).shape
            g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
            return x, w, b, g
        return x, w, b

    return make


def _flops(s, backward: bool, transposed: bool = False):
    N, C, H, W, K, k, st, p = s
    if transposed:  # the backward-data of a convolution whose output is this input: every input pixel meets K*k*k
        flops = 2.0 * N * C * H * W * K * k * k
    else:
        P, Q = (H + 2 * p - k) // st + 1, (W + 2 * p - k) // st + 1
        flops = 2.0 * N * K * P * Q * C * k * k
    return (3 if backward else 1) * flops


def _impls(s, backward: bool, transposed: bool = False):
    _, _, _, _, _, _, st, p = s
    ours_fn = deepops.conv_transpose2d if transposed else deepops.conv2d
    ref_fn = F.conv_transpose2d if transposed else F.conv2d
    if not backward:
        return {
            "deepops": lambda i: ours_fn(i[0], i[1], i[2], st, p),
            "torch": lambda i: ref_fn(i[0], i[1], i[2], st, p),
        }

    def fwd_bwd(fn):
        def run(i):
            y = fn(i[0], i[1], i[2], st, p)
            return torch.autograd.grad(y, i[:3], i[3])

        return run

    return {"deepops": fwd_bwd(ours_fn), "torch": fwd_bwd(ref_fn)}


def _add(s, backward, devices, dtypes, quick, prefix="", transposed=False):
    op = "conv_transpose2d" if transposed else "conv2d"
    kind = "fwd+bwd" if backward else "fwd"
    register(
        Workload(
            op=op,  # the family --ops selects: conv2d or conv_transpose2d
            name=f"{prefix}{op} {kind} {_label(s)}",
            make_inputs=_maker(s, backward, transposed),
            impls=_impls(s, backward, transposed),
            flops=lambda i, s=s, b=backward, t=transposed: _flops(s, b, t),
            devices=devices,
            dtypes=dtypes,
            quick=quick,
        )
    )


for s in CPU_GOAL:
    for backward in (False, True):
        _add(s, backward, ("cpu", "cuda"), GPU_DTYPES, True, prefix="goal ")
for prefix, shapes in (("alexnet ", ALEXNET), ("resnet18 ", RESNET18_3X3), ("resnet50 ", RESNET50)):
    for s in shapes:
        for backward in (False, True):
            _add(s, backward, ("cuda",), GPU_DTYPES, not backward and prefix != "resnet50 ", prefix=prefix)
for backward in (False, True):
    # DCGAN generator: 8x8 -> 16x16, and the CPU-sized one
    _add((64, 256, 8, 8, 128, 4, 2, 1), backward, ("cuda",), (torch.float32, torch.float16), False, transposed=True)
    _add((8, 64, 16, 16, 32, 4, 2, 1), backward, ("cpu", "cuda"), (torch.float32,), True, transposed=True)
