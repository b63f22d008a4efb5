"""2-D max pooling with the semantics of ``torch.nn.functional.max_pool2d``.

Ops (schemas in the ``deepops`` namespace; ``K`` stands for ``int[2] kernel_size, int[2] stride, int[2] padding,
int[2] dilation, bool ceil_mode``):

=====================================================================  ===========================================
``max_pool2d_with_indices(Tensor input, K) -> (Tensor, Tensor)``       values and int64 flat per-plane indices
``max_pool2d(Tensor input, K) -> Tensor``                              values only (inference: no index traffic)
``max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, K) -> Tensor``  gather of the gradients
=====================================================================  ===========================================

Semantics, as PyTorch (checked against it in the tests):

* input ``(N, C, H, W)`` (``N`` may be 0) or ``(C, H, W)``; float16, bfloat16, float32, float64;
* ``kernel_size``, ``stride``, ``padding``, ``dilation``: an int or 1 or 2 ints; ``stride=None`` (or ``()``) means
  ``kernel_size``; ``padding`` at most half the kernel size; the output size is
  ``floor_or_ceil((H + 2p - d(k - 1) - 1) / s) + 1``, and with ``ceil_mode`` a last window that would start in the
  right padding is dropped;
* the first of equal maxima wins; NaN propagates: the last NaN of a window is its value and index; an all -inf
  window gives -inf and the index of its first element;
* outputs (values and indices) take the input's memory format (``suggest_memory_format``: channels_last for a
  channels_last 4-D input, contiguous otherwise), as PyTorch's do; so does the gradient;
* backward is a gather (each input element sums the gradients of the windows whose maximum it is), deterministic.
  It is differentiable too (its derivative with respect to ``grad_output`` is a gather at the indices).
"""

from __future__ import annotations

import numpy as np
import torch

from .._library import FLOAT_DTYPES, define
from ..cpu import pool as K

_COMPUTE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}
_OP = "max_pool2d"

# ------------------------------------------------------------------------------------------------------- checks


def _pair(value, arg: str, op: str = _OP) -> tuple[int, int]:
    """An int or a sequence of 1 or 2 ints as a pair; a clear error otherwise."""
    if isinstance(value, (list, tuple, torch.Size)):
        vals = tuple(value)
    else:
        vals = (value,)
    if len(vals) not in (1, 2) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
        raise (ValueError if all(isinstance(v, int) for v in vals) else TypeError)(
            f"deepops.{op}: '{arg}' must be an int or a tuple of 1 or 2 ints, got {value!r}"
        )
    vals = tuple(int(v) for v in vals)
    return vals * 2 if len(vals) == 1 else vals


def _out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window may not start in the right padding
        o -= 1
    return o


def _check(input, kernel_size, stride, padding, dilation, op: str = _OP):
    """Validate every argument; returns (kernel, stride, padding, dilation) as pairs."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"deepops.{op}: 'input' must be a torch.Tensor, got {type(input).__name__}")
    if input.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"deepops.{op}: 'input' has dtype {input.dtype}; supported dtypes are float16, bfloat16, float32 and "
            "float64"
        )
    shape = tuple(input.shape)
    if input.dim() not in (3, 4) or 0 in shape[-3:]:
        raise ValueError(
            f"deepops.{op}: 'input' must be (C, H, W) or (N, C, H, W) with non-zero C, H and W (N may be 0), got "
            f"shape {shape}"
        )
    k = _pair(kernel_size, "kernel_size", op)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _pair(stride, "stride", op)
    p = _pair(padding, "padding", op)
    d = _pair(dilation, "dilation", op)
    for name, v in (("kernel_size", k), ("stride", s), ("dilation", d)):
        if min(v) <= 0:
            raise ValueError(f"deepops.{op}: '{name}' must be positive, got {v}")
    if min(p) < 0:
        raise ValueError(f"deepops.{op}: 'padding' must be non-negative, got {p}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"deepops.{op}: 'padding' {p} must be at most half of 'kernel_size' {k}")
    return k, s, p, d


def _output_hw(input, k, s, p, d, ceil_mode, op: str = _OP):
    h, w = input.shape[-2:]
    oh = _out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"deepops.{op}: output size is too small: 'input' of spatial size ({h}, {w}) with 'kernel_size' {k}, "
            f"'stride' {s}, 'padding' {p}, 'dilation' {d} gives ({oh}, {ow})"
        )
    return oh, ow


def _is_channels_last(t: torch.Tensor) -> bool:
    """PyTorch's ``suggest_memory_format(t) == channels_last`` for a 4-D strided tensor (the stride rule of c10)."""
    if t.dim() != 4:
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    smin = 0
    for dim in (1, 3, 2, 0):
        if sizes[dim] == 0 or strides[dim] < smin:
            return False
        if dim == 0 and smin == strides[1]:
            return False
        smin = strides[dim] * (sizes[dim] if sizes[dim] > 1 else 1)
    return True


def _format(t: torch.Tensor):
    return torch.channels_last if _is_channels_last(t) else torch.contiguous_format


# ------------------------------------------------------------------------------------------------ CPU (Numba)


def _nchw_view(t4: torch.Tensor) -> np.ndarray:
    """A contiguous (N, C, H, W) tensor as a (planes, H, W) array."""
    n, c, h, w = t4.shape
    return t4.reshape(n * c, h, w).numpy()


def _nhwc_view(t4: torch.Tensor) -> np.ndarray:
    """A channels_last (N, C, H, W) tensor as its (N, H, W, C) storage."""
    return t4.permute(0, 2, 3, 1).numpy()


def _forward_cpu(input, kernel_size, stride, padding, dilation, ceil_mode, with_ind):
    k, s, p, d = _check(input, kernel_size, stride, padding, dilation)
    oh, ow = _output_hw(input, k, s, p, d, ceil_mode)
    fmt = _format(input)
    x4 = input.detach().unsqueeze(0) if input.dim() == 3 else input.detach()
    n, c = x4.shape[:2]
    out = torch.empty((n, c, oh, ow), dtype=input.dtype, memory_format=fmt)
    ind = torch.empty((n, c, oh, ow), dtype=torch.int64, memory_format=fmt)
    if out.numel() > 0:
        cdt = _COMPUTE.get(input.dtype, input.dtype)
        x4 = x4.to(cdt).contiguous(memory_format=fmt)
        res = out if cdt == input.dtype else torch.empty(out.shape, dtype=cdt, memory_format=fmt)
        args = (k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
        if fmt == torch.channels_last:
            ia = _nhwc_view(ind) if with_ind else np.empty((0, 0, 0, 0), np.int64)
            K.forward_nhwc(_nhwc_view(x4), _nhwc_view(res), ia, with_ind, *args)
        else:
            ia = _nchw_view(ind) if with_ind else np.empty((0, 0, 0), np.int64)
            K.forward_nchw(_nchw_view(x4), _nchw_view(res), ia, with_ind, *args)
        if res is not out:
            out.copy_(res)
    if input.dim() == 3:
        out, ind = out[0], ind[0]
    return out, ind


def _with_indices_cpu(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _forward_cpu(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _values_cpu(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _forward_cpu(input, kernel_size, stride, padding, dilation, ceil_mode, False)[0]


def _check_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    op = "max_pool2d_backward"
    k, s, p, d = _check(input, kernel_size, stride, padding, dilation, op)
    oh, ow = _output_hw(input, k, s, p, d, ceil_mode, op)
    want = (*input.shape[:-2], oh, ow)
    for name, t in (("grad_output", grad_output), ("indices", indices)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"deepops.{op}: '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != want:
            raise ValueError(f"deepops.{op}: '{name}' has shape {tuple(t.shape)}, expected {want}")
        if t.device != input.device:
            raise RuntimeError(f"deepops.{op}: '{name}' is on {t.device} but 'input' is on {input.device}")
    if grad_output.dtype != input.dtype:
        raise TypeError(f"deepops.{op}: 'grad_output' has dtype {grad_output.dtype} but 'input' has {input.dtype}")
    if indices.dtype != torch.int64:
        raise TypeError(f"deepops.{op}: 'indices' must be int64, got {indices.dtype}")
    return k, s, p, d


def _backward_cpu(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    k, s, p, d = _check_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode)
    fmt = _format(input)
    gin = torch.empty(input.shape, dtype=input.dtype, memory_format=fmt)
    if gin.numel() == 0:
        return gin
    squeeze = input.dim() == 3
    g4 = grad_output.detach().unsqueeze(0) if squeeze else grad_output.detach()
    i4 = indices.unsqueeze(0) if squeeze else indices
    cdt = _COMPUTE.get(input.dtype, input.dtype)
    g4 = g4.to(cdt).contiguous(memory_format=fmt)
    i4 = i4.contiguous(memory_format=fmt)
    gin4 = gin.unsqueeze(0) if squeeze else gin
    res = gin4 if cdt == input.dtype else torch.empty(gin4.shape, dtype=cdt, memory_format=fmt)
    args = (k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    if fmt == torch.channels_last:
        K.backward_nhwc(_nhwc_view(g4), _nhwc_view(i4), _nhwc_view(res), *args)
    else:
        K.backward_nchw(_nchw_view(g4), _nchw_view(i4), _nchw_view(res), *args)
    if res is not gin4:
        gin4.copy_(res)
    return gin


# ------------------------------------------------------------------------------------------------------- fakes


def _fake_out(input, kernel_size, stride, padding, dilation, ceil_mode, dtype=None):
    k, s, p, d = _check(input, kernel_size, stride, padding, dilation)
    oh, ow = _output_hw(input, k, s, p, d, ceil_mode)
    shape = (*input.shape[:-2], oh, ow)
    return torch.empty(shape, dtype=dtype or input.dtype, device=input.device, memory_format=_format(input))


def _with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    a = (input, kernel_size, stride, padding, dilation, ceil_mode)
    return _fake_out(*a), _fake_out(*a, dtype=torch.int64)


def _values_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _fake_out(input, kernel_size, stride, padding, dilation, ceil_mode)


def _backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode):
    _check_backward(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode)
    return torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=_format(input))


_K = "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode"
define(f"max_pool2d_with_indices(Tensor input, {_K}) -> (Tensor, Tensor)", _with_indices_cpu, _with_indices_fake)
define(f"max_pool2d(Tensor input, {_K}) -> Tensor", _values_cpu, _values_fake)
define(
    f"max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, {_K}) -> Tensor",
    _backward_cpu,
    _backward_fake,
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
    k, s, p, d = _check(input, kernel_size, stride, padding, dilation)
    args = (list(k), list(s), list(p), list(d), bool(ceil_mode))
    if return_indices or (torch.is_grad_enabled() and input.requires_grad):
        out, ind = ops.max_pool2d_with_indices(input, *args)
        return (out, ind) if return_indices else out
    return ops.max_pool2d(input, *args)
