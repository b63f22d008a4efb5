"""The CUDA kernels run on the CPU by the emulated launch (``DEEPOPS_CPU_BACKEND=cuda-emu``, a build with
``DEEPOPS_EMULATE_CUDA=1``); skipped otherwise.  The rest of the suite (parity, opcheck, gradcheck, the fuzzers,
the bad-input matrix) runs against the emulated kernels unchanged under that backend; this file adds what only the
emulator can check:

* every ``__global__`` kernel instantiation that a launcher can launch runs (in the dtypes and layouts its
  launchers take), and the list goes to ``DEEPOPS_EMU_COVERAGE_REPORT`` for CI's log;
* every op gives bitwise identical outputs under three thread orders within a block (forward, reverse, seeded
  shuffle): a missing barrier or a race between the threads of a block shows up as a difference;
* the TF32 tensor-core path of float32 convolutions (off in the parity tests, as PyTorch's CPU never uses it);
* the 64-bit index variants of max pooling, forced on small tensors;
* a differential fuzz of the few-channel forward (conv_fewchan.cu: C <= 4, float16 / bfloat16 / TF32, which the
  general fuzzers reach only on a GPU), against float64 on the operands as the tensor cores take them;
* a differential fuzz of float32 weight gradients with TF32 allowed (the vector kernel and the element gather),
  against PyTorch's in float64.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from conftest import EMULATED, layout

import deepops
from deepops import _ext

pytestmark = pytest.mark.skipif(not EMULATED, reason="needs DEEPOPS_CPU_BACKEND=cuda-emu (emulated CUDA kernels)")

ops = torch.ops.deepops
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _emu():
    return _ext.emulator()


def _layouts(x):
    """x contiguous, channels_last, and misaligned: its data one element past a 16-byte boundary (the scalar paths
    of the vectorised kernels)."""
    return [layout(x, kind) for kind in ("contiguous", "channels_last", "misaligned")]


def _conv_workload(dtype, tf32):
    """conv2d, its three gradients and conv_transpose2d on shapes that take every kernel: wide (K > 64) and narrow
    GEMMs, grouped, depthwise (multiplier 1 and 2), strided backward-input phases, split-K weight gradients, the
    16-byte vector kernels (channel counts multiples of 8), the element gather (3, 4 or 6 channels per group)
    and the few-channel forward (C <= 4, groups 1)."""
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        outs = []
        cases = [  # (N, C, H, W, K, R, stride, padding, groups)
            (2, 16, 20, 20, 96, 3, 1, 1, 1),  # wide GEMM, split-K weight gradient, vector paths (C, K % 8 == 0)
            (2, 16, 9, 11, 16, 3, 2, 1, 1),  # narrow GEMM, strided backward-input, weight gradient dw^T = x^T dy
            (2, 8, 6, 6, 72, 1, 1, 0, 1),  # 1x1, K > 64 over C*R*S <= 64 columns: the narrow dw = dy x kernel
            (2, 3, 10, 9, 72, 3, 1, 1, 1),  # C = 3 first layer: the few-channel forward, gathered backwards
            (1, 1, 9, 7, 8, 3, 2, 1, 1),  # C = 1: the few-channel forward with 2 channel slots
            (1, 6, 7, 8, 72, 3, 1, 1, 1),  # C = 6: the element gather, wide (no 16-byte chunks)
            (1, 8, 7, 6, 16, 3, 1, 1, 2),  # grouped
            (2, 8, 24, 24, 8, 3, 1, 1, 8),  # depthwise, split reductions
            (1, 4, 6, 5, 8, 3, 1, 0, 4),  # depthwise multiplier 2
        ]
        for N, C, H, W, K, R, s, p, g in cases:
            x = torch.randn(N, C, H, W).to(dtype)
            w = torch.randn(K, C // g, R, R).to(dtype)
            b = torch.randn(K).to(dtype)
            for xl in list(_layouts(x))[:2]:
                for wl in (w, w.contiguous(memory_format=torch.channels_last)):
                    y = ops.conv2d(xl, wl, b, [s, s], [p, p], [1, 1], g)
                    gy = torch.randn_like(y)
                    outs += [
                        y,
                        ops.conv2d_backward_input(gy, wl, list(x.shape), [s, s], [p, p], [1, 1], g),
                        ops.conv2d_backward_weight(gy, xl, list(w.shape), [s, s], [p, p], [1, 1], g),
                        ops.conv2d_backward_bias(gy),
                    ]
            wt = torch.randn(C, K // g, R, R).to(dtype)
            outs.append(ops.conv_transpose2d(x, wt, None, [s, s], [p, p], [0, 0], g, [1, 1]))
        return outs
    finally:
        torch.backends.cudnn.allow_tf32 = False


def _pool_workload(dtype):
    outs = []
    for shape in ((2, 16, 9, 11), (1, 3, 8, 7)):  # C % 8 == 0 (vector path in channels_last) and not
        for x in _layouts(torch.randn(shape).to(dtype)):
            y, ind = ops.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
            outs += [y, ind, ops.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], True)]
            outs.append(ops.max_pool2d_backward(torch.randn_like(y), x, ind, [3, 3], [2, 2], [1, 1], [1, 1], False))
    return outs


def _activation_workload(dtype):
    outs = []
    x0, g0 = torch.randn(3, 5, 7, 9).to(dtype), torch.randn(3, 5, 7, 9).to(dtype)
    for x, g, y in zip(_layouts(x0), _layouts(g0), _layouts(torch.relu(x0))):
        outs += [ops.relu(x), ops.leaky_relu(x, 0.1), ops.relu_backward(g, y), ops.leaky_relu_backward(g, x, 0.1)]
        z = x.clone()
        ops.relu_(z)
        outs.append(z)
    return outs


def _nms_workload(dtype):
    outs = []
    gen = torch.Generator().manual_seed(3)
    for n in (40, 700):  # the single-block path and the tiled path
        xy = torch.rand(n, 2, generator=gen) * 200
        wh = torch.rand(n, 2, generator=gen) * 40 + 2
        boxes = torch.cat([xy, xy + wh], 1).to(dtype)
        scores = torch.rand(n, generator=gen).to(dtype)
        idxs = torch.randint(0, 4, (n,), generator=gen)
        outs += [ops.nms(boxes, scores, 0.5), ops.batched_nms(boxes, scores, idxs, 0.5)]
        outs.append(ops.box_iou(boxes[:50], boxes))
    return outs


def _all_outputs():
    outs = []
    for dt in DTYPES:
        outs += _activation_workload(dt) + _pool_workload(dt) + _nms_workload(dt) + _conv_workload(dt, tf32=False)
    outs += _conv_workload(torch.float32, tf32=True)
    return outs


def test_every_kernel_runs():
    emu = _emu()
    emu.reset_kernel_launch_counts()
    _all_outputs()
    emu.set_force_64bit_indices(True)
    try:
        for dt in DTYPES:
            _pool_workload(dt)
    finally:
        emu.set_force_64bit_indices(False)
    launched = emu.kernel_launch_counts()
    registered = emu.registered_kernels()
    missing = [k for k in registered if k not in launched]
    lines = [f"emulated CUDA kernels run on the CPU: {len(registered) - len(missing)} of {len(registered)} "
             "__global__ kernel instantiations"]
    lines += [f"  {launched.get(k, 0):6d}  {k}" for k in registered]
    report = os.environ.get("DEEPOPS_EMU_COVERAGE_REPORT")
    if report:
        with open(report, "w") as f:
            f.write("\n".join(lines) + "\n")
    assert not missing, "kernels never launched:\n" + "\n".join(missing)
    assert len(registered) > 50  # every op family, dtype and variant is instantiated


def _same(a, b):
    """Same shape and values, NaN matching NaN (as in the tests' other comparisons, -0.0 equals 0.0)."""
    if a.shape != b.shape:
        return False
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])


def test_identical_outputs_under_three_schedules():
    emu = _emu()
    before = emu.schedule()
    results = {}
    try:
        for sched in ("forward", "reverse", "shuffle:12345"):
            emu.set_schedule(sched)
            torch.manual_seed(0)
            results[sched] = _all_outputs()
    finally:
        emu.set_schedule(before)
    ref = results["forward"]
    for sched, outs in results.items():
        assert len(outs) == len(ref)
        bad = [i for i, (a, b) in enumerate(zip(outs, ref)) if not _same(a, b)]
        assert not bad, f"schedule {sched}: outputs {bad} differ from the forward schedule's"


def test_tf32_tensor_cores():
    # float32 with TF32 allowed runs the m16n8k8 tensor-core kernels: close to float64 at TF32's precision (10-bit
    # mantissa inputs, float32 accumulation), and not bit-identical to the FFMA path
    x = torch.randn(2, 16, 10, 10)
    w = torch.randn(32, 16, 3, 3)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    exact = deepops.conv2d(x, w, padding=1)
    torch.backends.cudnn.allow_tf32 = True
    try:
        tf32 = deepops.conv2d(x, w, padding=1)
    finally:
        torch.backends.cudnn.allow_tf32 = False
    scale = ref.abs().max().item()
    assert (exact.double() - ref).abs().max().item() < 1e-5 * scale
    err = (tf32.double() - ref).abs().max().item()
    assert 1e-6 * scale < err < 5e-3 * scale, err


def _tf32(t):
    """float32 rounded to TF32 as cvt.rna.tf32.f32 does: to a 10-bit mantissa, ties away from zero."""
    b = t.to(torch.float32).contiguous().view(torch.int32)
    return ((b + 0x1000) & -0x2000).view(torch.float32)


try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a test extra
    given = None

if given is not None:
    _pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731

    @settings(max_examples=int(os.environ.get("DEEPOPS_FEWCHAN_EXAMPLES", "30")), deadline=None)
    @given(c=st.integers(1, 4), k=st.integers(1, 72), kernel=_pair(1, 5), stride=_pair(1, 3), dilation=_pair(1, 2),
           padding=_pair(0, 3), h=st.integers(1, 10), w=st.integers(1, 75), n=st.integers(1, 2),
           kind=st.sampled_from(["contiguous", "channels_last", "strided", "last_two_swapped"]),
           dtype=st.sampled_from(["float16", "bfloat16", "tf32"]), bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
    def test_fuzz_few_channel_forward(c, k, kernel, stride, dilation, padding, h, w, n, kind, dtype, bias, seed):
        (r, s), (dh, dw) = kernel, dilation
        assume(h + 2 * padding[0] >= dh * (r - 1) + 1 and w + 2 * padding[1] >= dw * (s - 1) + 1)
        g = torch.Generator().manual_seed(seed)
        x64 = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
        w64 = torch.randn(k, c, r, s, generator=g, dtype=torch.float64)
        b64 = torch.randn(k, generator=g, dtype=torch.float64) if bias else None
        tdt = torch.float32 if dtype == "tf32" else getattr(torch, dtype)
        x, wt = x64.to(tdt), w64.to(tdt)
        b = b64.to(tdt) if bias else None
        # the reference sees the operands as the tensor cores do (TF32: rounded; the bias is added in float32)
        xr, wr = (_tf32(x), _tf32(wt)) if dtype == "tf32" else (x, wt)
        ref = F.conv2d(xr.double(), wr.double(), b.double() if bias else None, stride, padding, dilation)
        emu = _emu()
        emu.reset_kernel_launch_counts()
        torch.backends.cudnn.allow_tf32 = dtype == "tf32"
        try:
            y = deepops.conv2d(layout(x, kind), wt, b, stride, padding, dilation)
        finally:
            torch.backends.cudnn.allow_tf32 = False
        assert any("conv_fewchan_kernel" in name for name in emu.kernel_launch_counts()), emu.kernel_launch_counts()
        assert y.dtype == tdt and y.shape == ref.shape
        # float32 accumulation, then one rounding to the output type
        rtol = {"float16": 2**-10, "bfloat16": 2**-7, "tf32": 1e-6}[dtype]
        scale = max(1.0, ref.abs().max().item())
        err = (y.double() - ref).abs() - rtol * ref.abs()
        assert err.max().item() <= 2e-6 * scale * (c * r * s) ** 0.5, (err.max().item(), scale)


    @settings(max_examples=int(os.environ.get("DEEPOPS_TF32_WGRAD_EXAMPLES", "20")), deadline=None)
    @given(cg=st.sampled_from([3, 4, 8, 12]), kg=st.sampled_from([4, 6, 8, 20, 68]), groups=st.integers(1, 2),
           kernel=_pair(1, 3), stride=_pair(1, 2), dilation=_pair(1, 2), padding=_pair(0, 2), h=st.integers(3, 9),
           w=st.integers(3, 9), n=st.integers(1, 2), kind=st.sampled_from(["contiguous", "channels_last"]),
           seed=st.integers(0, 2**31 - 1))
    def test_fuzz_tf32_backward_weight(cg, kg, groups, kernel, stride, dilation, padding, h, w, n, kind, seed):
        # float32 weight gradients with TF32 allowed: the vector kernel (C/g and K/g multiples of 4; permuted MMA
        # rows and columns, 8- and 4-byte fragment loads) or the element gather, against float64.  The vector
        # kernel hands the tensor core unrounded operands (it truncates them to TF32: < 2^-10 relative each), the
        # gather rounds them (< 2^-11): |error| <= 2^-9 of the sum of |products|, plus float32 accumulation.
        (r, s_), (dh, dw) = kernel, dilation
        assume(h + 2 * padding[0] >= dh * (r - 1) + 1 and w + 2 * padding[1] >= dw * (s_ - 1) + 1)
        c, k = cg * groups, kg * groups
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, c, h, w, generator=g)
        wshape = [k, cg, r, s_]
        p_ = (h + 2 * padding[0] - dh * (r - 1) - 1) // stride[0] + 1
        q_ = (w + 2 * padding[1] - dw * (s_ - 1) - 1) // stride[1] + 1
        dy = torch.randn(n, k, p_, q_, generator=g)
        args = (wshape, list(stride), list(padding), list(dilation), groups)
        emu = _emu()
        emu.reset_kernel_launch_counts()
        torch.backends.cudnn.allow_tf32 = True
        try:
            got = ops.conv2d_backward_weight(layout(dy, kind), layout(x, kind), *args)
        finally:
            torch.backends.cudnn.allow_tf32 = False
        vec = [name for name in emu.kernel_launch_counts() if "conv_igemm_vec_kernel<float" in name]
        assert bool(vec) == (cg % 4 == 0 and kg % 4 == 0), emu.kernel_launch_counts()
        ref = torch.nn.grad.conv2d_weight(x.double(), wshape, dy.double(), stride, padding, dilation, groups)
        mag = torch.nn.grad.conv2d_weight(x.double().abs(), wshape, dy.double().abs(), stride, padding, dilation,
                                          groups)
        err = (got.double() - ref).abs()
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert (err <= 2**-9 * mag + 1e-5).all(), (err.max().item(), mag.max().item())

def test_pool_64bit_index_variant_matches():
    emu = _emu()
    for dt in DTYPES:
        x = torch.randn(2, 16, 9, 11).to(dt).contiguous(memory_format=torch.channels_last)
        want = ops.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        emu.reset_kernel_launch_counts()
        emu.set_force_64bit_indices(True)
        try:
            got = ops.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        finally:
            emu.set_force_64bit_indices(False)
        assert any("long" in k or "int64" in k for k in emu.kernel_launch_counts()), emu.kernel_launch_counts()
        assert _same(got[0], want[0]) and torch.equal(got[1], want[1])


def test_info_names_the_backend():
    assert "emulated" in deepops.info()["backend_cpu"]
