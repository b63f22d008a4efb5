"""2-D convolution and transposed convolution, with ``torch.nn.functional.conv2d``/``conv_transpose2d`` semantics.

Ops (schemas in the ``deepops`` namespace; the CUDA binding registers the same names):

==========================================================================================================  ===========
``conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, int groups)``  forward
``conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, ...stride, padding, dilation, groups)``  dL/dinput
``conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, ...)``                    dL/dweight
``conv2d_backward_bias(Tensor grad_output)``                                                                dL/dbias
``conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, stride, padding, output_padding, groups, dilation)``  forward
==========================================================================================================  ===========

* The ops see symmetric, non-negative padding only.  ``padding='same'`` and ``'valid'`` are resolved by the Python
  functions :func:`conv2d`; the asymmetric 'same' padding of even kernels is an ``F.pad`` of the extra row/column on
  the bottom/right before the op, exactly as PyTorch does it.  Unbatched 3-D inputs are unsqueezed here too.
* Every argument is validated once per call: by the op's check (``_check_*``, run by ``define`` before the CPU
  kernel and the fake; the CUDA binding checks in C++ with the same rules and messages).  The public functions only
  turn their arguments into the op's (pairs, padding strings, unbatched inputs), so every back end raises the same
  messages ("deepops.conv2d: 'arg' ...").
* Memory format (PyTorch's rule, ``deepops._rules.memory_format``; the CUDA binding's ``layout_of`` is the same):
  every op but the bias gradient returns channels_last when EITHER of its two tensor arguments suggests
  channels_last, else contiguous NCHW - the weight gradient included.  The autograd formulas hand ``grad_output``
  to the backward ops in the forward's format, so the gradients take the format of (input, weight), as PyTorch's.
  Non-contiguous tensors are accepted.
* Empty outputs (PyTorch's rules; see :func:`_check_conv_transpose2d` and :func:`_check_input_plane`): a transposed
  convolution's output may have zero height or width (a negative one is an error), any op may have an empty batch,
  and the public functions refuse an input with an empty plane unless the batch or the channels are empty.
* dtypes: float32 and float64; float16/bfloat16 too (on the CPU computed in float32 and cast back, as PyTorch's CPU
  path also accumulates them in float32).  Output dtype = input dtype; input, weight and bias share dtype and device.
* Autograd: conv2d's gradient uses the three backward ops (each its own kernel, so it works on every device), and
  the backward ops have autograd formulas of their own (each is linear in each argument, and its derivatives are
  again convolutions), so double backward works.  conv_transpose2d's forward is convolution's backward-data; its
  backward is a conv2d (input), a conv2d_backward_weight (weight) and a conv2d_backward_bias (bias).

The CPU kernels (im2col/col2im around MKL's GEMM) and their strategy are in ``deepops.cpu.conv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import cpu
from .._library import define
from .._rules import (
    batched,
    check_float,
    check_geometry,
    check_same,
    check_tensor,
    conv_out_hw,
    conv_transpose_out_hw,
    memory_format,
    pair,
)

# ------------------------------------------------------------------------------------------------------- checks


def _check_tensors(input, weight, bias, groups, op: str, transposed: bool) -> None:
    """Types, ranks, dtypes, devices, channel counts, groups and bias of a (transposed) convolution."""
    check_float(input, "input", op)
    check_float(weight, "weight", op)
    if input.dim() != 4:
        raise ValueError(
            f"deepops.{op}: 'input' must be 4-D (N, C, H, W) (or 3-D (C, H, W) unbatched), got shape {tuple(input.shape)}"
        )
    if weight.dim() != 4:
        layout = "(C_in, C_out/groups, kH, kW)" if transposed else "(C_out, C_in/groups, kH, kW)"
        raise ValueError(f"deepops.{op}: 'weight' must be 4-D {layout}, got shape {tuple(weight.shape)}")
    check_same(weight, input, ("weight", "input"), op, shape=False)
    if isinstance(groups, bool) or not isinstance(groups, (int, torch.SymInt)):
        raise TypeError(f"deepops.{op}: 'groups' must be an int, got {groups!r}")
    if groups <= 0:
        raise ValueError(f"deepops.{op}: 'groups' must be positive, got {groups}")
    c_in = input.shape[1]
    if c_in % groups != 0:
        raise ValueError(f"deepops.{op}: 'groups'={groups} does not divide the {c_in} channels of 'input'")
    if transposed:
        if weight.shape[0] != c_in:
            raise ValueError(
                f"deepops.{op}: 'weight' has {weight.shape[0]} input channels (its dim 0) but 'input' has {c_in} "
                "channels"
            )
        c_out = weight.shape[1] * groups
    else:
        if weight.shape[1] * groups != c_in:
            raise ValueError(
                f"deepops.{op}: 'weight' expects {weight.shape[1]} channels per group x {groups} groups = "
                f"{weight.shape[1] * groups} input channels, but 'input' has {c_in} channels"
            )
        if weight.shape[0] % groups != 0:
            raise ValueError(
                f"deepops.{op}: 'groups'={groups} does not divide the {weight.shape[0]} output channels of 'weight'"
            )
        c_out = weight.shape[0]
    if bias is not None:
        check_tensor(bias, "bias", op, optional=True)
        check_same(bias, input, ("bias", "input"), op, shape=False)
        if bias.dim() != 1 or bias.shape[0] != c_out:
            raise ValueError(
                f"deepops.{op}: 'bias' must have shape ({c_out},) (one per output channel), got {tuple(bias.shape)}"
            )


def _check_conv2d(input, weight, bias, stride, padding, dilation, groups, op="conv2d"):
    """Every check of a convolution."""
    _check_tensors(input, weight, bias, groups, op, transposed=False)
    check_geometry(op, stride=stride, padding=padding, dilation=dilation)
    H, W = input.shape[2], input.shape[3]
    R, S = weight.shape[2], weight.shape[3]
    eh, ew = dilation[0] * (R - 1) + 1, dilation[1] * (S - 1) + 1
    if H + 2 * padding[0] < eh or W + 2 * padding[1] < ew:
        raise ValueError(
            f"deepops.{op}: kernel size ({R}, {S}) (dilated: ({eh}, {ew})) is larger than the padded input "
            f"({H + 2 * padding[0]}, {W + 2 * padding[1]}) ('input' {H}x{W} with 'padding' {tuple(padding)})"
        )


def _check_conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation):
    """Every check of a transposed convolution."""
    op = "conv_transpose2d"
    _check_tensors(input, weight, bias, groups, op, transposed=True)
    check_geometry(op, stride=stride, padding=padding, dilation=dilation, output_padding=output_padding)
    for i in range(2):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(
                f"deepops.{op}: 'output_padding' {tuple(output_padding)} must be non-negative and smaller than "
                f"max('stride', 'dilation') = ({max(stride[0], dilation[0])}, {max(stride[1], dilation[1])})"
            )
    Ho, Wo = conv_transpose_out_hw(input.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    # An empty output plane is a result, a negative one an error.  PyTorch 2.13 on the CPU: float32 (oneDNN) returns
    # the empty tensor (and zero gradients), so does every dtype with an empty batch; float64/float16/bfloat16 with
    # a batch take its slow path, which wants >= 1 ("Output size is too small").  deepops has one rule for every
    # dtype and device: the float32 / empty-batch one.  Negative sizes fail in PyTorch too, with messages that
    # depend on the path ("could not construct a memory descriptor", "invalid shape dimension", ...).
    if Ho < 0 or Wo < 0:
        raise ValueError(
            f"deepops.{op}: the output size ({Ho}, {Wo}) is negative: 'padding' {tuple(padding)} is too large "
            f"for 'input' {input.shape[2]}x{input.shape[3]} and kernel {tuple(weight.shape[2:])}"
        )


def _check_input_plane(input, op):
    """PyTorch's "Only zero batch or zero channel inputs are supported": an input with an empty plane (H or W = 0)
    is refused unless N or C is 0 too.  Only the public functions apply it: the ops themselves take such inputs,
    since the gradient of a transposed convolution with an empty output is a conv2d of that empty gradient."""
    N, C, H, W = input.shape
    if N != 0 and C != 0 and (H == 0 or W == 0):
        raise ValueError(
            f"deepops.{op}: 'input' {tuple(input.shape)} has an empty {H}x{W} plane; as in PyTorch, only an empty "
            "batch (N = 0) or zero channels may make the input empty"
        )


def _check_grad_output(grad_output, other, other_name, op):
    check_float(grad_output, "grad_output", op)
    check_float(other, other_name, op)
    if grad_output.dim() != 4:
        raise ValueError(f"deepops.{op}: 'grad_output' must be 4-D (N, C_out, P, Q), got {tuple(grad_output.shape)}")
    if other.dim() != 4:
        raise ValueError(f"deepops.{op}: '{other_name}' must be 4-D, got {tuple(other.shape)}")
    check_same(other, grad_output, (other_name, "grad_output"), op, shape=False)


def _size4(size, name, op):
    if len(size) != 4:
        raise ValueError(f"deepops.{op}: '{name}' must have 4 entries, got {list(size)}")


def _check_conv2d_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    op = "conv2d_backward_input"
    _check_grad_output(grad_output, weight, "weight", op)
    _size4(input_size, "input_size", op)
    N, C, H, W = input_size
    if groups <= 0 or C % groups or weight.shape[1] * groups != C or weight.shape[0] % groups:
        raise ValueError(
            f"deepops.{op}: 'weight' {tuple(weight.shape)} with 'groups'={groups} does not fit 'input_size' "
            f"{list(input_size)}"
        )
    check_geometry(op, stride=stride, padding=padding, dilation=dilation)
    want = (N, weight.shape[0], *conv_out_hw((H, W), weight.shape[2:], stride, padding, dilation))
    if tuple(grad_output.shape) != want:
        raise ValueError(f"deepops.{op}: 'grad_output' has shape {tuple(grad_output.shape)}, expected {want}")


def _check_conv2d_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    op = "conv2d_backward_weight"
    _check_grad_output(grad_output, input, "input", op)
    _size4(weight_size, "weight_size", op)
    K_, Cg, R, S = weight_size
    C = input.shape[1]
    if groups <= 0 or C % groups or Cg * groups != C or K_ % groups:
        raise ValueError(
            f"deepops.{op}: 'weight_size' {list(weight_size)} with 'groups'={groups} does not fit 'input' "
            f"{tuple(input.shape)}"
        )
    check_geometry(op, stride=stride, padding=padding, dilation=dilation)
    want = (input.shape[0], K_, *conv_out_hw(input.shape[2:], (R, S), stride, padding, dilation))
    if tuple(grad_output.shape) != want:
        raise ValueError(f"deepops.{op}: 'grad_output' has shape {tuple(grad_output.shape)}, expected {want}")


def _check_conv2d_backward_bias(grad_output):
    check_float(grad_output, "grad_output", "conv2d_backward_bias")
    if grad_output.dim() != 4:
        raise ValueError(
            f"deepops.conv2d_backward_bias: 'grad_output' must be 4-D (N, C_out, P, Q), got {tuple(grad_output.shape)}"
        )


# ------------------------------------------------------------------------------------------------------- fakes
#
# The memory format rule (module docstring), measured on PyTorch 2.13 (CPU, every float dtype): conv2d,
# conv_transpose2d and both gradients of ``aten.convolution_backward`` come out channels_last when the input or the
# weight is channels_last, whatever the format of grad_output.  In PyTorch's source (ATen/native/ConvUtils.h and
# Convolution.cpp, ``_determine_backend_memory_format``) ``mkldnn_conv_use_channels_last``,
# ``thnn_conv_use_channels_last`` and, on CUDA, ``cudnn_conv_suggest_memory_format`` make the same "input or
# weight" test, except that cuDNN keeps float64 contiguous; deepops applies the rule to every dtype on both devices.


def _empty4(shape, like: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format(a, b))


def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    P, Q = conv_out_hw(input.shape[2:], weight.shape[2:], stride, padding, dilation)
    return _empty4((input.shape[0], weight.shape[0], P, Q), input, input, weight)


def _conv2d_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    return _empty4(list(input_size), grad_output, grad_output, weight)


def _conv2d_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return _empty4(list(weight_size), grad_output, grad_output, input)


def _conv2d_backward_bias_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


def _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
    Ho, Wo = conv_transpose_out_hw(input.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)
    return _empty4((input.shape[0], weight.shape[1] * groups, Ho, Wo), input, input, weight)


_GEOM = "int[2] stride, int[2] padding, int[2] dilation, int groups"
define(
    f"conv2d(Tensor input, Tensor weight, Tensor? bias, {_GEOM}) -> Tensor",
    _check_conv2d, cpu.conv.conv2d, _conv2d_fake,
)
define(
    f"conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, {_GEOM}) -> Tensor",
    _check_conv2d_backward_input, cpu.conv.conv2d_backward_input, _conv2d_backward_input_fake,
)
define(
    f"conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, {_GEOM}) -> Tensor",
    _check_conv2d_backward_weight, cpu.conv.conv2d_backward_weight, _conv2d_backward_weight_fake,
)
define(
    "conv2d_backward_bias(Tensor grad_output) -> Tensor",
    _check_conv2d_backward_bias, cpu.conv.conv2d_backward_bias, _conv2d_backward_bias_fake,
)
define(
    "conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
    "int[2] output_padding, int groups, int[2] dilation) -> Tensor",
    _check_conv_transpose2d, cpu.conv.conv_transpose2d, _conv_transpose2d_fake,
)

# ------------------------------------------------------------------------------------------------------ autograd
ops = torch.ops.deepops


def _save_operands_and_geometry(ctx, inputs, output):
    """The setup of conv2d and of both its backward ops: each schema is (tensor, tensor, bias or size, stride,
    padding, dilation, groups); the two tensors are what the gradient formulas need."""
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.geom = tuple(inputs[3:7])


def _conv2d_bwd(ctx, grad):
    input, weight = ctx.saved_tensors
    # in the forward's format (as PyTorch's convolution_backward does), so that both gradients take the format of
    # (input, weight) whatever the format of the incoming gradient
    grad = grad.contiguous(memory_format=memory_format(input, weight))
    gi = gw = gb = None
    if ctx.needs_input_grad[0]:
        gi = ops.conv2d_backward_input(grad, weight, list(input.shape), *ctx.geom)
    if ctx.needs_input_grad[1]:
        gw = ops.conv2d_backward_weight(grad, input, list(weight.shape), *ctx.geom)
    if ctx.needs_input_grad[2]:
        gb = ops.conv2d_backward_bias(grad)
    return gi, gw, gb, None, None, None, None


def _bwd_input_bwd(ctx, gg):
    # y = B(go, W) is the adjoint of the convolution: <gg, B(go, W)> = <conv(gg, W), go>
    go, weight = ctx.saved_tensors
    g_go = g_w = None
    if ctx.needs_input_grad[0]:
        g_go = ops.conv2d(gg, weight, None, *ctx.geom)
    if ctx.needs_input_grad[1]:
        g_w = ops.conv2d_backward_weight(go, gg, list(weight.shape), *ctx.geom)
    return g_go, g_w, None, None, None, None, None


def _bwd_weight_bwd(ctx, gg):
    # <gg, Bw(go, x)> = <conv(x, gg), go>
    go, input = ctx.saved_tensors
    g_go = g_x = None
    if ctx.needs_input_grad[0]:
        g_go = ops.conv2d(input, gg, None, *ctx.geom)
    if ctx.needs_input_grad[1]:
        g_x = ops.conv2d_backward_input(go, gg, list(input.shape), *ctx.geom)
    return g_go, g_x, None, None, None, None, None


def _bwd_bias_setup(ctx, inputs, output):
    ctx.shape = inputs[0].shape


def _bwd_bias_bwd(ctx, gg):
    return gg.view(1, -1, 1, 1).expand(ctx.shape)


def _conv_t_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, output_padding, groups, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.geom = (stride, padding, dilation, groups)


def _conv_t_bwd(ctx, grad):
    # y = B(x, W) + b with B conv2d's backward-data: dL/dx = conv2d(gy, W), dL/dW = Bw(x, gy)
    input, weight = ctx.saved_tensors
    H, W = input.shape[2], input.shape[3]
    fmt = memory_format(input, weight)
    grad = grad.contiguous(memory_format=fmt)  # as in _conv2d_bwd
    gi = gw = gb = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        # with output_padding >= stride (allowed when dilation > stride) the convolution of the output has rows and
        # columns past the input's: they meet no input position (their gradient is cut off, their input is 0)
        P, Q = conv_out_hw(grad.shape[2:], weight.shape[2:], *ctx.geom[:3])
    if ctx.needs_input_grad[0]:
        gi = ops.conv2d(grad, weight, None, *ctx.geom)
        if (P, Q) != (H, W):
            gi = gi[:, :, :H, :W].contiguous(memory_format=fmt)
    if ctx.needs_input_grad[1]:
        x = input if (P, Q) == (H, W) else F.pad(input, (0, Q - W, 0, P - H))
        gw = ops.conv2d_backward_weight(x, grad, list(weight.shape), *ctx.geom)
    if ctx.needs_input_grad[2]:
        gb = ops.conv2d_backward_bias(grad)
    return gi, gw, gb, None, None, None, None, None


torch.library.register_autograd("deepops::conv2d", _conv2d_bwd, setup_context=_save_operands_and_geometry)
torch.library.register_autograd("deepops::conv2d_backward_input", _bwd_input_bwd, setup_context=_save_operands_and_geometry)
torch.library.register_autograd("deepops::conv2d_backward_weight", _bwd_weight_bwd, setup_context=_save_operands_and_geometry)
torch.library.register_autograd("deepops::conv2d_backward_bias", _bwd_bias_bwd, setup_context=_bwd_bias_setup)
torch.library.register_autograd("deepops::conv_transpose2d", _conv_t_bwd, setup_context=_conv_t_setup)

# ------------------------------------------------------------------------------------------------------ public API


def _same_padding(x, weight, stride, dilation, op):
    """padding='same': the symmetric padding, and ``x`` padded by the extra bottom row / right column that an even
    (dilated) kernel needs, as PyTorch does.  A weight that is not 4-D is left to the op's check."""
    if stride != (1, 1):
        raise ValueError(f"deepops.{op}: padding='same' is not supported for strided convolutions ('stride' {stride})")
    if weight.dim() != 4:
        return x, (0, 0)
    total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
    padding = (total[0] // 2, total[1] // 2)
    extra = (total[0] - 2 * padding[0], total[1] - 2 * padding[1])
    if extra != (0, 0):
        x = F.pad(x, (0, extra[1], 0, extra[0]))
    return x, padding


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """``torch.nn.functional.conv2d``: 2-D cross-correlation of ``input`` (N, C_in, H, W) or (C_in, H, W) with
    ``weight`` (C_out, C_in/groups, kH, kW), plus ``bias`` (C_out,).

    ``stride``, ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` (no padding) or ``'same'`` (output
    as large as the input; stride 1 only; an even kernel's extra row/column is padded at the bottom/right as in
    PyTorch).  ``groups`` splits the channels (``groups == C_in`` is a depthwise convolution).
    """
    op = "conv2d"
    x, unbatched = batched(input, op)
    check_tensor(weight, "weight", op)
    check_tensor(bias, "bias", op, optional=True)
    stride = pair(stride, "stride", op)
    dilation = pair(dilation, "dilation", op)
    if not isinstance(padding, str):
        padding = pair(padding, "padding", op)
    elif padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        x, padding = _same_padding(x, weight, stride, dilation, op)
    else:
        raise ValueError(f"deepops.{op}: 'padding' must be an int, a pair, 'same' or 'valid', got {padding!r}")
    _check_input_plane(x, op)
    out = ops.conv2d(x, weight, bias, list(stride), list(padding), list(dilation), groups)
    return out.squeeze(0) if unbatched else out


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> torch.Tensor:
    """``torch.nn.functional.conv_transpose2d``: the transposed convolution ("deconvolution") of ``input``
    (N, C_in, H, W) or (C_in, H, W) with ``weight`` (C_in, C_out/groups, kH, kW), plus ``bias`` (C_out,).

    The output is (N, C_out, (H-1)*stride - 2*padding + dilation*(kH-1) + output_padding + 1, ...) for each side;
    ``output_padding`` must be smaller than the stride or the dilation.
    """
    op = "conv_transpose2d"
    x, unbatched = batched(input, op)
    check_tensor(weight, "weight", op)
    check_tensor(bias, "bias", op, optional=True)
    if isinstance(padding, str):
        raise ValueError(f"deepops.{op}: 'padding' must be an int or a pair of ints, got {padding!r}")
    stride = pair(stride, "stride", op)
    padding = pair(padding, "padding", op)
    output_padding = pair(output_padding, "output_padding", op)
    dilation = pair(dilation, "dilation", op)
    _check_input_plane(x, op)
    out = ops.conv_transpose2d(
        x, weight, bias, list(stride), list(padding), list(output_padding), groups, list(dilation)
    )
    return out.squeeze(0) if unbatched else out
