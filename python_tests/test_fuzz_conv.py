"""Differential fuzzing of conv2d and conv_transpose2d against PyTorch: hypothesis draws batch (0 included), channels,
groups (depthwise included), kernel, stride, padding (ints, 'same', 'valid'), dilation, output_padding, sizes
(size-1 included), dtype, memory layout (channels_last, a strided view, H and W swapped in memory) and bias; the values and all
three gradients must agree with torch.nn.functional on the same inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given, strategies as st  # noqa: E402

import deepops  # noqa: E402
from conftest import EMULATED, HAS_CUDA, layout  # noqa: E402
from conftest import assert_close_scaled as _close  # noqa: E402
from fuzz_common import devices, layouts  # noqa: E402


@st.composite
def conv_cases(draw, transposed=False):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    if draw(st.booleans()) and not transposed:  # depthwise, with a channel multiplier
        groups = cin = draw(st.integers(1, 4))
        cout = cin * draw(st.integers(1, 2))
    pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731
    kernel, stride, dilation = draw(pair(1, 5)), draw(pair(1, 3)), draw(pair(1, 3))
    padding = draw(st.one_of(pair(0, 3), st.sampled_from(["same", "valid"]) if not transposed else pair(0, 3)))
    if padding == "same":
        stride = (1, 1)
    return dict(n=draw(st.integers(0, 3)), cin=cin, cout=cout, groups=groups, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, h=draw(st.integers(1, 14)), w=draw(st.integers(1, 14)),
                bias=draw(st.booleans()), out_pad=draw(pair(0, 2)))


def _dtypes(device):
    # 16-bit where the CUDA kernels run: on a GPU, or on the CPU under the emulator
    half = device == "cuda" or EMULATED
    return st.sampled_from([torch.float32, torch.float64] + ([torch.float16, torch.bfloat16] if half else []))


def _inputs(c, dtype, device, kind, seed, weight_shape):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(c["n"], c["cin"], c["h"], c["w"], generator=g, dtype=torch.float64)
    w = torch.randn(*weight_shape, generator=g, dtype=torch.float64)
    b = torch.randn(c["cout"], generator=g, dtype=torch.float64)
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    return layout(cast(x), kind), cast(w), (cast(b) if c["bias"] else None)


def _compare(fn_ours, fn_ref, args, dtype, what):
    ours = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    ref = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    y, yr = fn_ours(*ours), fn_ref(*ref)
    _close(y, yr, dtype, f"{what} forward")
    if yr.numel() == 0:
        return
    go = torch.randn(yr.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(yr)
    leaves = [a for a in ours if a is not None]
    leaves_ref = [a for a in ref if a is not None]
    for a, r, name in zip(torch.autograd.grad(y, leaves, go), torch.autograd.grad(yr, leaves_ref, go),
                          ("input", "weight", "bias")):
        _close(a, r, dtype, f"{what} grad {name}")


@given(c=conv_cases(), data=st.data(), kind=layouts, device=devices, seed=st.integers(0, 2**31 - 1))
def test_fuzz_conv2d(c, data, kind, device, seed):
    dtype = data.draw(_dtypes(device))
    (r, s), (dh, dw) = c["kernel"], c["dilation"]
    pad = c["padding"] if isinstance(c["padding"], tuple) else (0, 0)
    assume(c["h"] + 2 * pad[0] >= dh * (r - 1) + 1 and c["w"] + 2 * pad[1] >= dw * (s - 1) + 1)
    x, w, b = _inputs(c, dtype, device, kind, seed, (c["cout"], c["cin"] // c["groups"], r, s))
    geo = (c["stride"], c["padding"], c["dilation"], c["groups"])
    _compare(lambda x, w, b: deepops.conv2d(x, w, b, *geo), lambda x, w, b: F.conv2d(x, w, b, *geo),
             [x, w, b], dtype, f"conv2d {c} {kind} {dtype}")


@given(c=conv_cases(transposed=True), data=st.data(), kind=layouts, device=devices, seed=st.integers(0, 2**31 - 1))
def test_fuzz_conv_transpose2d(c, data, kind, device, seed):
    dtype = data.draw(_dtypes(device))
    (r, s), (dh, dw), (sh, sw) = c["kernel"], c["dilation"], c["stride"]
    out_pad = tuple(min(o, max(st_, d) - 1) for o, st_, d in zip(c["out_pad"], c["stride"], c["dilation"]))
    ho = (c["h"] - 1) * sh - 2 * c["padding"][0] + dh * (r - 1) + out_pad[0] + 1
    wo = (c["w"] - 1) * sw - 2 * c["padding"][1] + dw * (s - 1) + out_pad[1] + 1
    assume(ho > 0 and wo > 0)
    x, w, b = _inputs(c, dtype, device, kind, seed, (c["cin"], c["cout"] // c["groups"], r, s))
    geo = (c["stride"], c["padding"], out_pad, c["groups"], c["dilation"])
    _compare(lambda x, w, b: deepops.conv_transpose2d(x, w, b, *geo),
             lambda x, w, b: F.conv_transpose2d(x, w, b, *geo), [x, w, b], dtype,
             f"conv_transpose2d {c} out_pad={out_pad} {kind} {dtype}")


if HAS_CUDA:  # pragma: no cover - runs where a GPU is lent

    @given(c=conv_cases(), seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([torch.float32, torch.float64]))
    def test_fuzz_conv2d_cuda_matches_cpu(c, seed, dtype):
        (r, s), (dh, dw) = c["kernel"], c["dilation"]
        pad = c["padding"] if isinstance(c["padding"], tuple) else (0, 0)
        assume(c["h"] + 2 * pad[0] >= dh * (r - 1) + 1 and c["w"] + 2 * pad[1] >= dw * (s - 1) + 1)
        x, w, b = _inputs(c, dtype, "cpu", "contiguous", seed, (c["cout"], c["cin"] // c["groups"], r, s))
        geo = (c["stride"], c["padding"], c["dilation"], c["groups"])
        _close(deepops.conv2d(x.cuda(), w.cuda(), b.cuda() if b is not None else None, *geo).cpu(),
               deepops.conv2d(x, w, b, *geo), dtype, f"cuda vs cpu {c}")
