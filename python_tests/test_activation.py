"""ReLU and leaky ReLU against PyTorch: values, special values, layouts, in place, gradients, opcheck, compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deepops
from conftest import ALL_FLOATS, DEVICES, layout, layouts

SHAPES = [(), (0,), (1,), (7,), (1000,), (3, 5), (2, 3, 4, 5), (4, 3, 17, 9), (0, 3, 4, 4), (1, 1, 1, 4099)]
SPECIALS = [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-30, -1e-30, 3e38, -3e38]


def _rand(shape, dtype, device):
    x = torch.randn(shape, dtype=torch.float64) * 3
    if x.numel():
        flat = x.view(-1)
        k = min(len(SPECIALS), flat.numel())
        flat[:k] = torch.tensor(SPECIALS[:k], dtype=torch.float64)
    return x.to(dtype=dtype, device=device)


def _same(a, b):
    """Bitwise-equal values (NaN == NaN), same shape, dtype, device and strides."""
    assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
    if a.numel() > 1:
        assert a.stride() == b.stride(), (a.stride(), b.stride())
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_torch(device, dtype, shape):
    x0 = _rand(shape, dtype, device)
    for name, x in layouts(x0):
        _same(deepops.relu(x), torch.relu(x))
        for slope in (0.01, 0.2, 0.0, -1.5):
            _same(deepops.leaky_relu(x, slope), F.leaky_relu(x, slope))


@pytest.mark.parametrize("device", DEVICES)
def test_relu_keeps_negative_zero_and_nan(device):
    x = torch.tensor([-0.0, float("nan"), -5.0, float("-inf")], device=device)
    y = deepops.relu(x)
    assert torch.signbit(y[0]) and torch.isnan(y[1]) and y[2] == 0 and y[3] == 0
    assert torch.isneginf(deepops.leaky_relu(x, 0.5)[3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
def test_inplace_matches_torch(device, dtype):
    x0 = _rand((4, 3, 6, 5), dtype, device)
    for name, x in layouts(x0):
        a, b = x.clone(), x.clone()
        # clone() keeps dense layouts but not a view's: make the strided and misaligned ones again
        if name in ("strided", "misaligned"):
            a = layout(x, name)
        r = deepops.relu(a, inplace=True)
        assert r is a
        torch.testing.assert_close(a, torch.relu_(b), rtol=0, atol=0, equal_nan=True)
        a, b = x.clone(), x.clone()
        r = deepops.leaky_relu(a, 0.3, inplace=True)
        assert r is a
        torch.testing.assert_close(a, F.leaky_relu(b, 0.3, inplace=True), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
def test_backward_matches_torch(device, dtype):
    x0 = _rand((3, 4, 7, 5), dtype, device)
    for name, x in layouts(x0):
        for ours, ref in [
            (deepops.relu, torch.relu),
            (lambda t: deepops.leaky_relu(t, 0.2), lambda t: F.leaky_relu(t, 0.2)),
        ]:
            a = x.detach().clone().requires_grad_()
            b = x.detach().clone().requires_grad_()
            g = torch.randn(x.shape, dtype=torch.float32).to(dtype=dtype, device=device)
            ours(a).backward(g)
            ref(b).backward(g)
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_of_expanded_grad(device):
    # sum().backward() hands the backward a stride-0 expanded gradient
    x = torch.randn(5, 6, device=device, requires_grad=True)
    deepops.leaky_relu(x, 0.1).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(x > 0, 1.0, 0.1))


@pytest.mark.parametrize("device", DEVICES)
def test_inplace_under_autograd(device):
    x = torch.randn(4, 5, device=device, requires_grad=True)
    y = x * 2
    deepops.relu(y, inplace=True)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(x > 0, 2.0, 0.0))
    # leaky ReLU's backward needs the input that the in-place update overwrites (any slope, negative too)
    for slope in (0.1, -0.5):
        x.grad = None
        y = x * 2
        deepops.leaky_relu(y, slope, inplace=True)
        (y * y).sum().backward()
        torch.testing.assert_close(x.grad, torch.where(x > 0, 8 * x, 8 * slope * slope * x))
    leaf = torch.randn(3, requires_grad=True, device=device)
    with pytest.raises(RuntimeError, match="leaf"):
        deepops.relu(leaf, inplace=True)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device):
    x = torch.randn(3, 4, 5, dtype=torch.float64, device=device)
    x = torch.where(x.abs() < 1e-2, x + 0.1, x).requires_grad_()  # keep away from the kink at 0
    assert torch.autograd.gradcheck(deepops.relu, (x,))
    assert torch.autograd.gradcheck(lambda t: deepops.leaky_relu(t, 0.3), (x,))
    assert torch.autograd.gradgradcheck(deepops.relu, (x,))
    assert torch.autograd.gradgradcheck(lambda t: deepops.leaky_relu(t, 0.3), (x,))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randn(3, 4, 5, 6, device=device)
    g = torch.randn(3, 4, 5, 6, device=device)
    ops = torch.ops.deepops
    for rg in (False, True):
        xr = x.clone().requires_grad_(rg)
        torch.library.opcheck(ops.relu.default, (xr,))
        torch.library.opcheck(ops.leaky_relu.default, (xr, 0.2))
        torch.library.opcheck(ops.relu_backward.default, (g.clone().requires_grad_(rg), xr))
        torch.library.opcheck(ops.leaky_relu_backward.default, (g.clone().requires_grad_(rg), xr, 0.2))
    torch.library.opcheck(ops.relu_.default, (x.clone(),))
    torch.library.opcheck(ops.leaky_relu_.default, (x.clone(), 0.2))
    torch.library.opcheck(ops.relu.default, (x.contiguous(memory_format=torch.channels_last),))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    def f(x):
        y = deepops.leaky_relu(x * 2, 0.1)
        z = deepops.relu(y - 0.5) * 3  # mul saves nothing of z, so z may be updated in place
        deepops.relu(z, inplace=True)
        deepops.leaky_relu(z, 0.2, inplace=True)
        return z.sum()

    x = torch.randn(8, 16, device=device, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x2 = x.detach().clone().requires_grad_()
    compiled(x).backward()
    f(x2).backward()
    torch.testing.assert_close(x.grad, x2.grad)
    # the inductor backend too (it generates C++ on the CPU), on a forward
    g = torch.compile(lambda t: deepops.relu(t) + 1, fullgraph=True)
    torch.testing.assert_close(g(x.detach()), torch.relu(x.detach()) + 1)


def test_bad_inputs():
    with pytest.raises(TypeError, match="dtype"):
        deepops.relu(torch.arange(5))
    with pytest.raises(TypeError, match="dtype"):
        deepops.leaky_relu(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        deepops.relu([1.0, -1.0])
    with pytest.raises(ValueError, match="shape"):
        torch.ops.deepops.relu_backward(torch.ones(3), torch.ones(4))
    with pytest.raises(TypeError, match="dtype"):
        torch.ops.deepops.leaky_relu_backward(torch.ones(3), torch.ones(3, dtype=torch.float64), 0.1)


def test_missing_cuda_extension_message():
    from deepops import _ext

    kernel = _ext.missing_cuda_kernel("deepops::relu")
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1 pip install --no-build-isolation"):
        kernel(torch.ones(1))


def test_every_op_has_cpu_fake_and_autograd_or_is_inplace():
    names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("deepops::")]
    assert set(names) >= {"deepops::relu", "deepops::leaky_relu", "deepops::relu_backward"}
    for n in names:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU"), n
        assert torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA"), n  # real kernel or how-to-build error


@pytest.mark.parametrize("device", DEVICES)
def test_nn_modules(device):
    x = torch.randn(2, 3, 4, 4, device=device)
    for ours, ref in [
        (deepops.nn.ReLU(), torch.nn.ReLU()),
        (deepops.nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
        (deepops.nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
    ]:
        assert isinstance(ours, type(ref))
        torch.testing.assert_close(ours(x.clone()), ref(x.clone()))
    assert repr(deepops.nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
