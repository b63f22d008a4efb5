"""max_pool2d against PyTorch: a randomised grid of shapes and arguments (values, indices, gradients, strides),
every dtype and layout, NaN / -inf, ceil_mode edge windows, 3-D and empty inputs, gradcheck, opcheck,
torch.compile, the nn.MaxPool2d drop-in.  Bad arguments are in test_bad_inputs.py."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

import deepops
from conftest import ALL_FLOATS, DEVICES, TOL, layouts

ops = torch.ops.deepops
NAN, INF = float("nan"), float("inf")


def _same(a, b, exact=True):
    """Equal values (NaN == NaN), same shape, dtype, device and strides."""
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device, (a.shape, b.shape, a.dtype, b.dtype)
    if a.numel() > 1:
        assert a.stride() == b.stride(), (a.stride(), b.stride())
    if exact:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        torch.testing.assert_close(a, b, equal_nan=True, **TOL[a.dtype])


def _random_case(rng: random.Random):
    k = (rng.randint(1, 4), rng.randint(1, 4))
    s = (rng.randint(1, 3), rng.randint(1, 3))
    d = (rng.randint(1, 2), rng.randint(1, 2))
    p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
    ceil = rng.random() < 0.5
    shape = (rng.randint(0, 3), rng.randint(1, 5), rng.randint(1, 11), rng.randint(1, 11))
    if rng.random() < 0.2:
        shape = shape[1:]
    return shape, k, s, p, d, ceil


def _values(shape, rng_seed, dtype, device, ties=False, nans=False):
    g = torch.Generator().manual_seed(rng_seed)
    if ties:  # few distinct values: equal maxima within windows
        x = torch.randint(-2, 3, shape, generator=g).double()
    else:
        x = torch.randn(shape, generator=g, dtype=torch.float64)
    if nans and x.numel():
        x[torch.rand(shape, generator=g) < 0.1] = NAN
        x[torch.rand(shape, generator=g) < 0.05] = -INF
    return x.to(dtype=dtype, device=device)


def _no_empty_window(x, out, k, s, p, d):
    """False when some window holds no input element (possible with dilation): PyTorch reports a made-up index for
    it and its backward adds that window's gradient to an unrelated element (or out of the plane); deepops gives
    such a window no gradient, as its output is constant.  The gradient comparison skips those cases."""
    for n_in, n_out, kk, ss, pp, dd in zip(x.shape[-2:], out.shape[-2:], k, s, p, d):
        for o in range(n_out):
            if not any(0 <= o * ss - pp + a * dd < n_in for a in range(kk)):
                return False
    return True


def _compare(x, k, s, p, d, ceil, grad=True):
    try:
        ref, ref_i = F.max_pool2d(x, k, s, p, d, ceil, True)
    except RuntimeError:
        with pytest.raises(ValueError):
            deepops.max_pool2d(x, k, s, p, d, ceil, True)
        return False
    out, ind = deepops.max_pool2d(x, k, s, p, d, ceil, True)
    _same(out, ref)
    _same(ind, ref_i)
    _same(deepops.max_pool2d(x, k, s, p, d, ceil), ref)  # the values-only op
    k, s, p, d = (v if isinstance(v, tuple) else (v, v) for v in (k, s if s is not None else k, p, d))
    if grad and _no_empty_window(x, ref, k, s, p, d):
        g = torch.randn(ref.shape, dtype=torch.float64).to(x)
        b = x.detach().clone().requires_grad_()
        deepops.max_pool2d(b, k, s, p, d, ceil).backward(g)
        # 16-bit types: deepops sums in float32 and rounds once, PyTorch may round after each addition; both are
        # compared with the float64 sum (same indices: the upcast is exact)
        half = x.dtype in (torch.float16, torch.bfloat16)
        a = x.detach().clone().double().requires_grad_() if half else x.detach().clone().requires_grad_()
        F.max_pool2d(a, k, s, p, d, ceil).backward(g.to(a.dtype))
        ref_grad = a.grad.to(x.dtype) if half else a.grad
        # PyTorch's CUDA backward adds with atomics (any order); its CPU one in output order, as our gather
        _same(b.grad, ref_grad, exact=x.device.type == "cpu" and not half)
    return True


# ------------------------------------------------------------------------------------------ randomised grid


def _run_grid(device, seed, cases=40):
    rng = random.Random(seed)
    done = 0
    for it in range(cases):
        shape, k, s, p, d, ceil = _random_case(rng)
        x = _values(shape, seed * 1000 + it, torch.float64, device, ties=it % 3 == 0, nans=it % 4 == 1)
        if len(shape) == 4 and it % 2:
            x = x.contiguous(memory_format=torch.channels_last)
        done += _compare(x, k, s, p, d, ceil)
    assert done >= cases // 2  # most random cases are valid pooling problems


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4))
def test_random_grid_matches_torch(device, seed):
    _run_grid(device, seed)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(4, 12))
def test_random_grid_long(device, seed):
    _run_grid(device, seed, cases=150)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
@pytest.mark.parametrize(
    "shape,k,s,p,d,ceil",
    [
        ((2, 3, 9, 11), 3, 2, 1, 1, False),
        ((2, 3, 9, 11), 3, 2, 1, 1, True),
        ((1, 5, 8, 8), 2, 2, 0, 1, False),
        ((3, 7, 10, 6), (3, 2), (1, 2), (1, 0), (2, 1), True),
        ((4, 13, 12), 3, 1, 1, 1, False),  # 3-D input
        ((0, 3, 8, 8), 2, 2, 0, 1, False),  # empty batch
        ((1, 16, 17, 17), 3, 2, 0, 1, True),
    ],
    ids=str,
)
def test_dtypes_and_layouts(device, dtype, shape, k, s, p, d, ceil):
    x0 = _values(shape, 7, dtype, device, nans=dtype == torch.float32)
    for name, x in layouts(x0):
        assert _compare(x, k, s, p, d, ceil), name


# ------------------------------------------------------------------------------------- special values, edges


@pytest.mark.parametrize("device", DEVICES)
def test_nan_propagation_last_nan_wins(device):
    x = torch.tensor([[[1.0, NAN, 5.0, NAN], [2.0, 3.0, NAN, 0.0]]], device=device)  # (1, 2, 4)
    out, ind = deepops.max_pool2d(x, 2, return_indices=True)
    ref, ref_i = F.max_pool2d(x, 2, return_indices=True)
    assert torch.isnan(out).all() and ind.tolist() == ref_i.tolist() == [[[1, 6]]]
    _same(out, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_all_minus_inf_window_reports_first_element(device):
    x = torch.full((1, 1, 4, 4), -INF, device=device)
    x[0, 0, 3, 3] = 1.0
    out, ind = deepops.max_pool2d(x, 2, padding=1, return_indices=True)
    ref, ref_i = F.max_pool2d(x, 2, padding=1, return_indices=True)
    _same(out, ref)
    _same(ind, ref_i)
    assert out[0, 0, 0, 0] == -INF and ind[0, 0, 1, 1] == 5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size,k,s,p", [(5, 2, 2, 0), (6, 3, 2, 1), (7, 3, 3, 1), (4, 2, 3, 1), (10, 4, 3, 2)])
def test_ceil_mode_edge_windows(device, size, k, s, p):
    x = _values((2, 3, size, size + 1), 3, torch.float64, device)
    for ceil in (False, True):
        assert _compare(x, k, s, p, 1, ceil)
    # the rule that drops a last window starting in the right padding: 4 + 2 * 1 with k 2, s 3 gives 2 windows
    if (size, k, s, p) == (4, 2, 3, 1):
        assert deepops.max_pool2d(x, k, s, p, ceil_mode=True).shape[-2] == 2


@pytest.mark.parametrize("device", DEVICES)
def test_ties_first_maximum_wins(device):
    x = torch.ones(1, 1, 4, 4, device=device)
    _, ind = deepops.max_pool2d(x, 2, return_indices=True)
    assert ind.flatten().tolist() == [0, 2, 8, 10]


# -------------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck(device, channels_last):
    # distinct values, so that the maximum is not at a tie and the finite differences are clean
    x = torch.randperm(2 * 2 * 5 * 6, dtype=torch.float64).view(2, 2, 5, 6).to(device) / 10
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    for i, (k, s, p, d, ceil) in enumerate([(3, 2, 1, 1, True), (2, 1, 0, 1, False), ((3, 2), (2, 1), (1, 1), (1, 2), False)]):
        fn = lambda t: deepops.max_pool2d(t, k, s, p, d, ceil)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), fast_mode=i > 0)
        if i == 0:
            assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_deterministic_and_strided_grad(device):
    x = _values((4, 8, 20, 20), 1, torch.float32, device, ties=True)
    x.requires_grad_()
    y = deepops.max_pool2d(x, 3, 1, 1)
    g = torch.randn(y.shape[0], y.shape[1], y.shape[3], y.shape[2], device=device).transpose(2, 3)  # non-dense
    (a,) = torch.autograd.grad(y, x, g, retain_graph=True)
    (b,) = torch.autograd.grad(y, x, g.contiguous())
    assert torch.equal(a, b)
    ref = x.detach().clone().requires_grad_()
    F.max_pool2d(ref, 3, 1, 1).backward(g)
    _same(a, ref.grad, exact=device == "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_no_grad_path_has_no_indices_and_same_values(device):
    x = _values((2, 4, 9, 9), 2, torch.float32, device, nans=True).requires_grad_()
    with torch.no_grad():
        a = deepops.max_pool2d(x, 3, 2)
    b = deepops.max_pool2d(x, 3, 2)
    assert a.grad_fn is None and b.grad_fn is not None
    _same(a, b.detach())
    # the values-only op is differentiable too (it finds the indices again)
    y = ops.max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], False)
    (g1,) = torch.autograd.grad(y.sum(), x)
    (g2,) = torch.autograd.grad(b.sum(), x)
    assert torch.equal(g1, g2)


# ---------------------------------------------------------------------------------------- opcheck, compile


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randperm(2 * 3 * 8 * 7, dtype=torch.float64).view(2, 3, 8, 7).to(device)
    args = ([3, 3], [2, 2], [1, 1], [1, 1], True)
    for t in (x, x.contiguous(memory_format=torch.channels_last), x[0]):
        for rg in (False, True):
            xi = t.clone().requires_grad_(rg)
            torch.library.opcheck(ops.max_pool2d_with_indices.default, (xi, *args))
            torch.library.opcheck(ops.max_pool2d.default, (xi, *args))
        out, ind = ops.max_pool2d_with_indices(t, *args)
        torch.library.opcheck(ops.max_pool2d_backward.default, (torch.randn_like(out), t, ind, *args))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    def net(x):
        y = deepops.max_pool2d(x, 3, 2, 1)
        y, i = deepops.max_pool2d(y * 2, 2, return_indices=True, ceil_mode=True)
        return y, i

    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    x = torch.randn(2, 4, 15, 13, device=device, requires_grad=True)
    y1, i1 = compiled(x)
    y2, i2 = net(x)
    _same(y1, y2)
    _same(i1, i2)
    (g1,) = torch.autograd.grad(y1.sum(), x)
    (g2,) = torch.autograd.grad(y2.sum(), x)
    torch.testing.assert_close(g1, g2)


# ---------------------------------------------------------------------------------------- nn.MaxPool2d


@pytest.mark.parametrize("device", DEVICES)
def test_nn_maxpool2d_drop_in(device):
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, ceil_mode=True, return_indices=True),
               dict(kernel_size=(3, 2), stride=1, dilation=2)):
        ours, ref = deepops.nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw)
        assert isinstance(ours, torch.nn.MaxPool2d)
        assert repr(ours) == repr(ref) and ours.state_dict().keys() == ref.state_dict().keys()
        x = torch.randn(2, 3, 11, 10, device=device)
        a, b = ours(x), ref(x)
        if kw.get("return_indices"):
            _same(a[0], b[0])
            _same(a[1], b[1])
        else:
            _same(a, b)
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), deepops.nn.MaxPool2d(2)).to(device)
    seq(torch.randn(1, 3, 8, 8, device=device)).sum().backward()
    assert seq[0].weight.grad is not None


@pytest.mark.cuda
def test_near_int32_limit():
    # NCHW 8191x64x64x64 = 2^31 - 262144 elements: the 32-bit grid-stride loops overflowed within one grid stride
    # of 2^31 (pool.cu's fits32 now takes the 64-bit kernels here).  A 1x1 window makes the output the input; the
    # elements at the end are the ones the overflow missed.  About 9 GB of GPU memory in float16.
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs a GPU with 24 GiB")
    x = torch.randn(8191, 64, 64, 64, dtype=torch.float16, device="cuda")
    y = deepops.max_pool2d(x, 1)
    assert torch.equal(y[-2:], x[-2:]) and torch.equal(y[:2], x[:2])
    del y
    y, ind = deepops.max_pool2d(x, 2, return_indices=True)
    ref, ref_ind = torch.nn.functional.max_pool2d(x[-3:], 2, return_indices=True)
    assert torch.equal(y[-3:], ref) and torch.equal(ind[-3:], ref_ind)
