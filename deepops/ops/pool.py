"""2-D max pooling with the semantics of ``torch.nn.functional.max_pool2d``.

Ops (schemas in the ``deepops`` namespace; ``K`` stands for ``int[2] kernel_size, int[2] stride, int[2] padding,
int[2] dilation, bool ceil_mode``):

=====================================================================  ===========================================
``max_pool2d_with_indices(Tensor input, K) -> (Tensor, Tensor)``       values and int64 flat per-plane indices
``max_pool2d(Tensor input, K) -> Tensor``                              values only (inference: no index traffic)
``max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, K) -> Tensor``  gather of the gradients
=====================================================================  ===========================================

Semantics, as PyTorch (checked against it in the tests):

* input ``(N, C, H, W)`` (``N`` may be 0) or ``(C, H, W)``; float16, bfloat16, float32, float64.  The public
  function takes an unbatched input as a batch of one, as ``conv2d`` does (``_rules.batched``); the ops accept
  ``(C, H, W)`` too (pooled as a batch of one, in contiguous format);
* ``kernel_size``, ``stride``, ``padding``, ``dilation``: an int or 1 or 2 ints; ``stride=None`` (or ``()``) means
  ``kernel_size``; ``padding`` at most half the kernel size; the output size is
  ``floor_or_ceil((H + 2p - d(k - 1) - 1) / s) + 1``, and with ``ceil_mode`` a last window that would start in the
  right padding is dropped;
* the first of equal maxima wins; NaN propagates: the last NaN of a window is its value and index; an all -inf
  window gives -inf and the index of its first element;
* a window that holds no input element at all (possible with dilation, e.g. ``W=1, kernel 2, dilation 2, padding
  1``) gives -inf and PyTorch's index for it (``first_row * W + first_column`` of the taps that are >= 0, which
  need not lie in the input); it passes no gradient on (its output does not depend on the input), where PyTorch's
  scatter would add its gradient to whatever element that index names;
* outputs (values and indices) take the input's memory format (``_rules.memory_format``: channels_last for a
  channels_last 4-D input, contiguous otherwise), as PyTorch's do; so does the gradient;
* every argument is checked once per call, by the op's check (run before the CPU kernel and the fake; the CUDA
  binding checks in C++ with the same rules); the CPU kernels are in ``deepops.cpu.pool``;
* backward is a gather (each input element sums the gradients of the windows whose maximum it is), deterministic.
  It is differentiable too (its derivative with respect to ``grad_output`` is a gather at the indices).
"""

from __future__ import annotations

import torch

from .. import cpu
from .._library import define
from .._rules import batched, check_float, check_geometry, check_tensor, memory_format, pair, pool_out_hw

_OP = "max_pool2d"

# ------------------------------------------------------------------------------------------------------- checks


def _pairs(kernel_size, stride, padding, dilation, op: str = _OP):
    """The four arguments as pairs (``stride`` None or empty means ``kernel_size``)."""
    k = pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else pair(stride, "stride", op)
    return k, s, pair(padding, "padding", op), pair(dilation, "dilation", op)


def output_hw(input, k, s, p, d, ceil_mode):
    """The output (height, width) of pooling ``input`` with the pairs of :func:`_pairs`."""
    return pool_out_hw(input.shape[-2:], k, s, p, d, ceil_mode)


def _check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, op: str = _OP):
    """Every check of a pooling's input and arguments."""
    check_float(input, "input", op)
    shape = tuple(input.shape)
    if input.dim() not in (3, 4) or 0 in shape[-3:]:
        raise ValueError(
            f"deepops.{op}: 'input' must be (C, H, W) or (N, C, H, W) with non-zero C, H and W (N may be 0), got "
            f"shape {shape}"
        )
    k, s, p, d = _pairs(kernel_size, stride, padding, dilation, op)
    check_geometry(op, kernel_size=k, stride=s, padding=p, dilation=d)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"deepops.{op}: 'padding' {p} must be at most half of 'kernel_size' {k}")
    oh, ow = output_hw(input, k, s, p, d, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"deepops.{op}: output size is too small: 'input' of spatial size {tuple(shape[-2:])} with 'kernel_size' "
            f"{k}, 'stride' {s}, 'padding' {p}, 'dilation' {d} gives ({oh}, {ow})"
        )


def _check_max_pool2d_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    op = "max_pool2d_backward"
    _check_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, op)
    want = (*input.shape[:-2], *output_hw(input, *_pairs(kernel_size, stride, padding, dilation, op), ceil_mode))
    for name, t in (("grad_output", grad_output), ("indices", indices)):
        check_tensor(t, name, op)
        if tuple(t.shape) != want:
            raise ValueError(f"deepops.{op}: '{name}' has shape {tuple(t.shape)}, expected {want}")
        if t.device != input.device:
            raise RuntimeError(f"deepops.{op}: '{name}' is on {t.device} but 'input' is on {input.device}")
    if grad_output.dtype != input.dtype:
        raise TypeError(f"deepops.{op}: 'grad_output' has dtype {grad_output.dtype} but 'input' has {input.dtype}")
    if indices.dtype != torch.int64:
        raise TypeError(f"deepops.{op}: 'indices' must be int64, got {indices.dtype}")


# ------------------------------------------------------------------------------------------------------- fakes


def _fake_out(input, kernel_size, stride, padding, dilation, ceil_mode, dtype=None):
    shape = (*input.shape[:-2], *output_hw(input, *_pairs(kernel_size, stride, padding, dilation), ceil_mode))
    return torch.empty(shape, dtype=dtype or input.dtype, device=input.device, memory_format=memory_format(input))


def _with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    a = (input, kernel_size, stride, padding, dilation, ceil_mode)
    return _fake_out(*a), _fake_out(*a, dtype=torch.int64)


def _values_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _fake_out(input, kernel_size, stride, padding, dilation, ceil_mode)


def _backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=memory_format(input))


_K = "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode"
define(
    f"max_pool2d_with_indices(Tensor input, {_K}) -> (Tensor, Tensor)",
    _check_max_pool2d, cpu.pool.max_pool2d_with_indices, _with_indices_fake,
)
define(f"max_pool2d(Tensor input, {_K}) -> Tensor", _check_max_pool2d, cpu.pool.max_pool2d, _values_fake)
define(
    f"max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, {_K}) -> Tensor",
    _check_max_pool2d_backward, cpu.pool.max_pool2d_backward, _backward_fake,
)

# ------------------------------------------------------------------------------------------------------ autograd
ops = torch.ops.deepops


def _with_indices_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output[1])
    ctx.args = inputs[1:]


def _with_indices_bwd(ctx, grad, _grad_indices):
    input, indices = ctx.saved_tensors
    return ops.max_pool2d_backward(grad, input, indices, *ctx.args), None, None, None, None, None


def _values_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.args = inputs[1:]


def _values_bwd(ctx, grad):
    # the values-only op keeps no indices: find them again (the public function uses the indexed op under autograd)
    (input,) = ctx.saved_tensors
    _, indices = ops.max_pool2d_with_indices(input, *ctx.args)
    return ops.max_pool2d_backward(grad, input, indices, *ctx.args), None, None, None, None, None


def _backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[2])


def _backward_bwd(ctx, gg):
    # max_pool2d_backward is linear in grad_output: d/d(grad_output) <gg, gather(grad_output)> = gg at the indices
    (indices,) = ctx.saved_tensors
    gg_flat = gg.flatten(-2)
    ggo = gg_flat.gather(-1, indices.flatten(-2).clamp(0, gg_flat.shape[-1] - 1)).view(indices.shape)
    return ggo, None, None, None, None, None, None, None


torch.library.register_autograd("deepops::max_pool2d_with_indices", _with_indices_bwd, setup_context=_with_indices_setup)
torch.library.register_autograd("deepops::max_pool2d", _values_bwd, setup_context=_values_setup)
torch.library.register_autograd("deepops::max_pool2d_backward", _backward_bwd, setup_context=_backward_setup)

# ------------------------------------------------------------------------------------------------------ public API


def max_pool2d(
    input: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
):
    """``torch.nn.functional.max_pool2d``: the maximum of each window; with ``return_indices`` also its flat
    per-plane index (int64).  Input ``(N, C, H, W)`` or ``(C, H, W)``, float16/bfloat16/float32/float64."""
    x, unbatched = batched(input, _OP)
    args = (*(list(v) for v in _pairs(kernel_size, stride, padding, dilation)), bool(ceil_mode))
    if return_indices or (torch.is_grad_enabled() and input.requires_grad):
        out, ind = ops.max_pool2d_with_indices(x, *args)
        if unbatched:
            out, ind = out.squeeze(0), ind.squeeze(0)
        return (out, ind) if return_indices else out
    out = ops.max_pool2d(x, *args)
    return out.squeeze(0) if unbatched else out
