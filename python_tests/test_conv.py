"""conv2d and conv_transpose2d against PyTorch: values and all three gradients over a seeded random grid of shapes
and parameters, layouts (channels_last, non-contiguous), dtypes, padding 'same'/'valid', groups and depthwise,
dilation, empty batches, unbatched inputs, gradcheck/gradgradcheck in float64, opcheck, torch.compile, the nn
layers, and errors.  The large grids carry the ``slow`` mark; the unmarked subset stays quick on two cores."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES, layout, stable_seed
from conftest import assert_close_scaled as _close

import deepops

ops = torch.ops.deepops


def _random_case(rng: random.Random, max_hw=12):
    """A random valid convolution: (N, C, H, W, K, (R, S), stride, padding, dilation, groups)."""
    while True:
        groups = rng.choice([1, 1, 1, 2, 3])
        cg = rng.randint(1, 3)
        kg = rng.randint(1, 3)
        C, Kc = cg * groups, kg * groups
        if rng.random() < 0.15:  # depthwise
            groups, C, Kc = C, C, C * rng.choice([1, 2])
        R, S = rng.randint(1, 4), rng.randint(1, 4)
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        padding = (rng.randint(0, 2), rng.randint(0, 2))
        H, W = rng.randint(1, max_hw), rng.randint(1, max_hw)
        N = rng.randint(1, 3)
        if H + 2 * padding[0] >= dilation[0] * (R - 1) + 1 and W + 2 * padding[1] >= dilation[1] * (S - 1) + 1:
            return N, C, H, W, Kc, (R, S), stride, padding, dilation, groups


def _check_conv(case, device, dtype, kind="contiguous", bias=True):
    N, C, H, W, Kc, (R, S), stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(stable_seed(case))
    x0 = torch.randn(N, C, H, W, generator=gen, dtype=torch.float64)
    w0 = torch.randn(Kc, C // groups, R, S, generator=gen, dtype=torch.float64)
    b0 = torch.randn(Kc, generator=gen, dtype=torch.float64) if bias else None
    ours = [layout(t.to(device, dtype), kind).requires_grad_() for t in (x0, w0)]
    ref = [t.to(device, dtype).requires_grad_() for t in (x0, w0)]
    if bias:
        ours.append(b0.to(device, dtype).requires_grad_())
        ref.append(b0.to(device, dtype).requires_grad_())
    y = deepops.conv2d(ours[0], ours[1], ours[2] if bias else None, stride, padding, dilation, groups)
    yr = F.conv2d(layout(ref[0], kind), ref[1], ref[2] if bias else None, stride, padding, dilation, groups)
    _close(y, yr, dtype, f"conv2d forward {case}")
    if kind == "channels_last" and C > 1 and H * W > 1 and y.shape[1] > 1 and y.shape[2] * y.shape[3] > 1:
        assert y.is_contiguous(memory_format=torch.channels_last)
    go = torch.randn(yr.shape, generator=gen, dtype=torch.float64).to(device, dtype)
    g = torch.autograd.grad(y, ours, go)
    gr = torch.autograd.grad(yr, ref, go)
    for a, b, name in zip(g, gr, ("input", "weight", "bias")):
        _close(a, b, dtype, f"conv2d grad {name} {case}")


def _check_conv_t(case, device, dtype, kind="contiguous", bias=True, rng=None):
    N, C, H, W, Kc, (R, S), stride, padding, dilation, groups = case
    # the transposed convolution maps C (its input) to Kc channels; torch needs padding small enough
    gen = torch.Generator().manual_seed(stable_seed(case))
    out_pad = tuple(
        (rng.randint(0, max(stride[i], dilation[i]) - 1) if rng else 0) for i in range(2)
    )
    Ho = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (R - 1) + out_pad[0] + 1
    Wo = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (S - 1) + out_pad[1] + 1
    if Ho <= 0 or Wo <= 0:
        padding = (0, 0)
    x0 = torch.randn(N, C, H, W, generator=gen, dtype=torch.float64)
    w0 = torch.randn(C, Kc // groups, R, S, generator=gen, dtype=torch.float64)
    b0 = torch.randn(Kc, generator=gen, dtype=torch.float64)
    ours = [layout(t.to(device, dtype), kind).requires_grad_() for t in (x0, w0)] + [b0.to(device, dtype).requires_grad_()]
    ref = [t.to(device, dtype).requires_grad_() for t in (x0, w0, b0)]
    bo, br = (ours[2], ref[2]) if bias else (None, None)
    y = deepops.conv_transpose2d(ours[0], ours[1], bo, stride, padding, out_pad, groups, dilation)
    yr = F.conv_transpose2d(ref[0], ref[1], br, stride, padding, out_pad, groups, dilation)
    what = f"conv_transpose2d {case} output_padding={out_pad}"
    _close(y, yr, dtype, what)
    go = torch.randn(yr.shape, generator=gen, dtype=torch.float64).to(device, dtype)
    n = 3 if bias else 2
    g = torch.autograd.grad(y, ours[:n], go)
    gr = torch.autograd.grad(yr, ref[:n], go)
    for a, b, name in zip(g, gr, ("input", "weight", "bias")):
        _close(a, b, dtype, f"{what} grad {name}")


# --------------------------------------------------------------------------------------------- random grids

QUICK_CASES = 30
SLOW_CASES = 400


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_random_grid(device, dtype):
    rng = random.Random(1234)
    for i in range(QUICK_CASES):
        _check_conv(_random_case(rng), device, dtype, kind=("contiguous", "channels_last", "strided")[i % 3], bias=i % 4 != 3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_random_grid(device, dtype):
    rng = random.Random(4321)
    for i in range(QUICK_CASES):
        _check_conv_t(_random_case(rng), device, dtype, kind=("contiguous", "channels_last", "strided")[i % 3],
                      bias=i % 4 != 3, rng=rng)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_random_grid_large(device, dtype):
    rng = random.Random(99)
    for i in range(SLOW_CASES):
        case = _random_case(rng, max_hw=24)
        kind = ("contiguous", "channels_last", "strided")[i % 3]
        _check_conv(case, device, dtype, kind=kind, bias=i % 2 == 0)
        _check_conv_t(case, device, dtype, kind=kind, bias=i % 2 == 1, rng=rng)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes(device, dtype):
    rng = random.Random(7)
    for _ in range(6):
        case = _random_case(rng)
        _check_conv(case, device, dtype)
        _check_conv_t(case, device, dtype)


# ------------------------------------------------------------------------------------------------ edge cases

EDGE = [
    # N, C, H, W, K, (R, S), stride, padding, dilation, groups
    (2, 3, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # plain
    (2, 4, 9, 7, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),  # non-square everything, groups
    (2, 6, 7, 7, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6),  # depthwise
    (2, 6, 7, 7, 12, (3, 3), (2, 2), (1, 1), (1, 1), 6),  # depthwise with multiplier 2
    (1, 4, 5, 5, 8, (1, 1), (1, 1), (0, 0), (1, 1), 1),  # 1x1
    (2, 4, 9, 9, 4, (1, 1), (2, 2), (0, 0), (1, 1), 1),  # strided 1x1
    (2, 3, 8, 8, 4, (3, 3), (1, 1), (4, 4), (3, 3), 1),  # dilation with big padding
    (1, 1, 16, 16, 8, (5, 5), (1, 1), (2, 2), (1, 1), 1),  # single channel
    (2, 3, 23, 23, 8, (11, 11), (4, 4), (2, 2), (1, 1), 1),  # AlexNet-like first layer
    (1, 2, 3, 3, 2, (3, 3), (1, 1), (0, 0), (1, 1), 1),  # kernel = input: 1x1 output
    (1, 2, 1, 1, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # 1x1 input, padding
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", EDGE, ids=[str(i) for i in range(len(EDGE))])
@pytest.mark.parametrize("kind", ["contiguous", "channels_last", "strided"])
def test_edge_cases(device, case, kind):
    _check_conv(case, device, torch.float64, kind)
    _check_conv_t(case, device, torch.float64, kind)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((4, 4), 1), ((2, 5), 1), ((4, 3), (2, 1)), ((2, 2), 3)])
def test_padding_same_and_valid(device, kernel, dilation):
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(4, 3, *kernel, dtype=torch.float64, device=device, requires_grad=True)
    for padding in ("same", "valid"):
        y = deepops.conv2d(x, w, None, 1, padding, dilation)
        yr = F.conv2d(x, w, None, 1, padding, dilation)
        _close(y, yr, torch.float64, padding)
        if padding == "same":
            assert y.shape[2:] == x.shape[2:]
        g = torch.autograd.grad(y.sum(), (x, w))
        gr = torch.autograd.grad(yr.sum(), (x, w))
        for a, b in zip(g, gr):
            _close(a, b, torch.float64, f"{padding} grad")


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_zero_channels(device):
    x = torch.randn(0, 3, 8, 8, device=device, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, device=device, requires_grad=True)
    b = torch.randn(4, device=device, requires_grad=True)
    y = deepops.conv2d(x, w, b, padding=1)
    assert y.shape == (0, 4, 8, 8)
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.abs().sum() == 0 and b.grad.abs().sum() == 0
    yt = deepops.conv_transpose2d(x, torch.randn(3, 4, 3, 3, device=device), stride=2)
    assert yt.shape == F.conv_transpose2d(x, torch.randn(3, 4, 3, 3, device=device), stride=2).shape
    y0 = deepops.conv2d(torch.randn(2, 3, 8, 8, device=device), torch.randn(0, 3, 3, 3, device=device))
    assert y0.shape == (2, 0, 6, 6)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_input(device):
    x = torch.randn(3, 10, 9, dtype=torch.float64, device=device)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64, device=device)
    _close(deepops.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), torch.float64, "unbatched conv2d")
    wt = torch.randn(3, 5, 3, 3, dtype=torch.float64, device=device)
    _close(deepops.conv_transpose2d(x, wt, stride=2), F.conv_transpose2d(x, wt, stride=2), torch.float64, "unbatched t")


@pytest.mark.parametrize("device", DEVICES)
def test_int_pair_and_list_arguments(device):
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64, device=device)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, device=device)
    for kw in (dict(stride=2), dict(stride=(2, 1)), dict(stride=[1, 2], padding=[1, 0]), dict(dilation=(2, 1), padding=2)):
        _close(deepops.conv2d(x, w, groups=2, **kw), F.conv2d(x, w, groups=2, **kw), torch.float64, str(kw))


# ------------------------------------------------------------------------------------- gradcheck, opcheck, compile


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_and_gradgradcheck(device):
    # small shapes: gradcheck perturbs every input element, gradgradcheck every element of the gradients too
    kw = dict(dtype=torch.float64, device=device, requires_grad=True)
    x = torch.randn(1, 4, 5, 4, **kw)
    w = torch.randn(4, 2, 3, 2, **kw)
    b = torch.randn(4, **kw)
    f = lambda x, w, b: deepops.conv2d(x, w, b, (2, 1), (1, 1), (1, 2), 2)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b), fast_mode=True)
    wt = torch.randn(4, 2, 3, 2, **kw)
    ft = lambda x, w, b: deepops.conv_transpose2d(x, w, b, (2, 1), (1, 0), (1, 0), 2, (1, 2))  # noqa: E731
    assert torch.autograd.gradcheck(ft, (x, wt, b))
    assert torch.autograd.gradgradcheck(ft, (x, wt, b), fast_mode=True)
    # output_padding >= stride (allowed when dilation > stride): the backward crops/pads the extra row
    ft2 = lambda x, w: deepops.conv_transpose2d(x, w, None, 1, 0, 1, 1, 2)  # noqa: E731
    assert torch.autograd.gradcheck(ft2, (x, torch.randn(4, 3, 2, 2, **kw)))


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_gradgradcheck_full(device):
    kw = dict(dtype=torch.float64, device=device, requires_grad=True)
    x = torch.randn(2, 4, 6, 5, **kw)
    w = torch.randn(6, 2, 3, 2, **kw)
    b = torch.randn(6, **kw)
    assert torch.autograd.gradgradcheck(lambda x, w, b: deepops.conv2d(x, w, b, (2, 1), (1, 1), (1, 2), 2), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    x = torch.randn(2, 4, 7, 6, device=device)
    w = torch.randn(6, 2, 3, 3, device=device)
    b = torch.randn(6, device=device)
    geom = ([2, 1], [1, 1], [1, 2], 2)
    go = torch.randn(2, 6, 4, 4, device=device)
    for fmt, rg in ((torch.contiguous_format, True), (torch.channels_last, True), (torch.contiguous_format, False)):
        xr, wr, br = (t.clone().requires_grad_(rg) for t in (x.contiguous(memory_format=fmt), w, b))
        gr = go.contiguous(memory_format=fmt).requires_grad_(rg)
        torch.library.opcheck(ops.conv2d.default, (xr, wr, br, *geom))
        torch.library.opcheck(ops.conv2d_backward_input.default, (gr, wr, list(x.shape), *geom))
        torch.library.opcheck(ops.conv2d_backward_weight.default, (gr, xr, list(w.shape), *geom))
        torch.library.opcheck(ops.conv2d_backward_bias.default, (gr,))
        wt = torch.randn(4, 3, 3, 3, device=device).requires_grad_(rg)
        torch.library.opcheck(ops.conv_transpose2d.default, (xr, wt, None, [2, 2], [1, 1], [1, 0], 2, [1, 1]))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    conv = deepops.nn.Conv2d(3, 8, 3, padding=1).to(device)
    deconv = deepops.nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1).to(device)

    def f(x):
        return deconv(deepops.relu(conv(x))).square().mean()

    x = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(x)
    gx, gw = torch.autograd.grad(loss, (x, conv.weight))
    loss_ref = f(x)
    rx, rw = torch.autograd.grad(loss_ref, (x, conv.weight))
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)
    # inductor on a forward (the fake implementation gives it the output's shape and strides)
    g = torch.compile(lambda t: deepops.conv2d(t, conv.weight.detach(), None, 1, "same") + 1, fullgraph=True)
    for n in (1, 3):
        t = torch.randn(n, 3, 9, 8, device=device)
        torch.testing.assert_close(g(t), F.conv2d(t, conv.weight.detach(), None, 1, "same") + 1)


# ------------------------------------------------------------------------------------------------- nn layers


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_nn_conv2d_drop_in(device, padding_mode):
    torch.manual_seed(3)
    ref = torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), groups=2, padding_mode=padding_mode).to(device)
    ours = deepops.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 1), groups=2, padding_mode=padding_mode).to(device)
    assert isinstance(ours, torch.nn.Conv2d)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 7, 8, device=device)
    _close(ours(x), ref(x), torch.float32, "nn.Conv2d")
    ours(x).sum().backward()
    ref(x).sum().backward()
    _close(ours.weight.grad, ref.weight.grad, torch.float32, "nn.Conv2d weight grad")
    _close(ours.bias.grad, ref.bias.grad, torch.float32, "nn.Conv2d bias grad")


@pytest.mark.parametrize("device", DEVICES)
def test_nn_conv_transpose2d_drop_in(device):
    ref = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).to(device)
    ours = deepops.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).to(device)
    assert isinstance(ours, torch.nn.ConvTranspose2d)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 5, 5, device=device)
    _close(ours(x), ref(x), torch.float32, "nn.ConvTranspose2d")
    _close(ours(x, output_size=[10, 10]), ref(x, output_size=[10, 10]), torch.float32, "output_size")
    with pytest.raises(ValueError, match="zeros"):
        deepops.nn.ConvTranspose2d(4, 6, 3, padding_mode="reflect")(x)


# ------------------------------------------------------------------------------------------------------ errors


def test_direct_op_errors():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match="'grad_output'"):
        ops.conv2d_backward_input(torch.randn(2, 4, 5, 5), w, [2, 3, 8, 8], [1, 1], [1, 1], [1, 1], 1)
    with pytest.raises(ValueError, match="weight_size"):
        ops.conv2d_backward_weight(torch.randn(2, 4, 8, 8), x, [4, 2, 3, 3], [1, 1], [1, 1], [1, 1], 1)
    with pytest.raises(ValueError, match="stride"):
        ops.conv2d(x, w, None, [0, 1], [1, 1], [1, 1], 1)
    with pytest.raises(TypeError, match="dtype"):
        ops.conv2d_backward_bias(torch.ones(2, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="padding"):
        deepops.conv_transpose2d(torch.randn(1, 3, 2, 2), torch.randn(3, 4, 1, 1), padding=2)
    with pytest.raises(TypeError, match="stride"):
        deepops.conv2d(x, w, stride=1.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["contiguous", "channels_last"])
def test_conv_transpose2d_1x1_with_output_padding(device, kind):
    # a 1x1 kernel with stride 1 is a plain GEMM only when the planes agree: output_padding (allowed here because
    # the dilation is larger than it) widens the output, which the pointwise shortcut once filled with garbage
    x = torch.randn(2, 2, 12, 3, dtype=torch.float64, device=device)
    w = torch.randn(2, 3, 1, 1, dtype=torch.float64, device=device)
    b = torch.randn(3, dtype=torch.float64, device=device)
    for out_pad, dil in (((0, 1), (1, 2)), ((1, 1), (2, 2)), ((2, 0), (3, 1))):
        ours = [layout(x, kind).requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()]
        ref = [t.clone().requires_grad_() for t in (x, w, b)]
        y = deepops.conv_transpose2d(*ours, 1, 0, out_pad, 1, dil)
        yr = F.conv_transpose2d(*ref, 1, 0, out_pad, 1, dil)
        _close(y, yr, torch.float64, f"1x1 transposed, output_padding={out_pad}")
        g = torch.randn_like(yr)
        for a, r in zip(torch.autograd.grad(y, ours, g), torch.autograd.grad(yr, ref, g)):
            _close(a, r, torch.float64, f"1x1 transposed grads, output_padding={out_pad}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv_transpose2d_empty_output_plane(device, dtype):
    # found by a new user: PyTorch returns an empty 1x8x2x0 tensor (and zero gradients) where the padding eats the
    # whole width; deepops used to raise.  (PyTorch's float64 CPU path refuses it - "Output size is too small" -
    # while float32 and CUDA accept it: deepops has the one rule for every dtype, so the reference is float32.)
    x = torch.randn(1, 2, 6, 4, dtype=dtype, device=device)
    w = torch.randn(2, 4, 3, 3, dtype=dtype, device=device)
    b = torch.randn(8, dtype=dtype, device=device)
    ours = [x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()]
    ref = [t.float().clone().requires_grad_() for t in (x, w, b)]
    y = deepops.conv_transpose2d(*ours, padding=4, dilation=2, groups=2)
    yr = F.conv_transpose2d(*ref, padding=4, dilation=2, groups=2)
    assert y.shape == yr.shape == (1, 8, 2, 0)
    y.sum().backward()
    yr.sum().backward()
    for a, r, name in zip(ours, ref, ("input", "weight", "bias")):
        assert a.grad.shape == r.grad.shape and a.grad.abs().sum() == 0 == r.grad.abs().sum(), name
    # one row more of padding makes the size negative: an error in both
    with pytest.raises(ValueError, match="negative"):
        deepops.conv_transpose2d(x, w, padding=5, dilation=2, groups=2)
    with pytest.raises(RuntimeError):
        F.conv_transpose2d(x.float(), w.float(), padding=5, dilation=2, groups=2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["input", "weight", "both", "neither"])
def test_memory_format_follows_input_or_weight(device, which):
    # PyTorch: a convolution's output and both gradients are channels_last when the input OR the weight is
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64, device=device)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, device=device)
    wt = torch.randn(4, 3, 3, 3, dtype=torch.float64, device=device)
    cl = torch.channels_last
    xf = x.contiguous(memory_format=cl) if which in ("input", "both") else x
    wf = w.contiguous(memory_format=cl) if which in ("weight", "both") else w
    wtf = wt.contiguous(memory_format=cl) if which in ("weight", "both") else wt
    for name, f_ours, f_ref, weight in (
        ("conv2d", lambda a, b: deepops.conv2d(a, b, padding=1, groups=2), lambda a, b: F.conv2d(a, b, padding=1, groups=2), wf),
        ("conv_transpose2d", lambda a, b: deepops.conv_transpose2d(a, b, stride=2), lambda a, b: F.conv_transpose2d(a, b, stride=2), wtf),
    ):
        ours = [xf.clone().requires_grad_(), weight.clone().requires_grad_()]
        ref = [xf.clone().requires_grad_(), weight.clone().requires_grad_()]
        y, yr = f_ours(*ours), f_ref(*ref)
        assert y.is_contiguous(memory_format=cl) == yr.is_contiguous(memory_format=cl), f"{name} output ({which})"
        _close(y, yr, torch.float64, f"{name} ({which})")
        g = torch.randn_like(yr)  # contiguous, whatever the forward's format
        got, want = torch.autograd.grad(y, ours, g), torch.autograd.grad(yr, ref, g)
        for a, r, what in zip(got, want, ("input", "weight")):
            assert a.is_contiguous(memory_format=cl) == r.is_contiguous(memory_format=cl), f"{name} d{what} ({which})"
            _close(a, r, torch.float64, f"{name} d{what} ({which})")
