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
* Every argument is validated in Python (:func:`_check_conv`), in the public functions, in the CPU kernels and in the
  fake implementations, so the CPU and CUDA back ends raise the same messages ("deepops.conv2d: 'arg' ...").
* Memory format (PyTorch's rule, :func:`_conv_format`; the CUDA binding's ``layout_of`` is the same): every op but
  the bias gradient returns channels_last when EITHER of its two tensor arguments suggests channels_last
  (``torch._prims_common.suggest_memory_format``, as ``suggest_memory_format()`` in C++), else contiguous NCHW -
  the weight gradient included.  The autograd formulas hand ``grad_output`` to the backward ops in the forward's
  format, so the gradients take the format of (input, weight), as PyTorch's.  Non-contiguous tensors are accepted.
* Empty outputs (PyTorch's rules; see :func:`_check_conv_t` and :func:`_check_input_plane`): a transposed
  convolution's output may have zero height or width (a negative one is an error), any op may have an empty batch,
  and the public functions refuse an input with an empty plane unless the batch or the channels are empty.
* dtypes: float32 and float64; float16/bfloat16 too (on the CPU computed in float32 and cast back, as PyTorch's CPU
  path also accumulates them in float32).  Output dtype = input dtype; input, weight and bias share dtype and device.
* Autograd: conv2d's gradient uses the three backward ops (each its own kernel, so it works on every device), and
  the backward ops have autograd formulas of their own (each is linear in each argument, and its derivatives are
  again convolutions), so double backward works.  conv_transpose2d's forward is convolution's backward-data; its
  backward is a conv2d (input), a conv2d_backward_weight (weight) and a conv2d_backward_bias (bias).

CPU back end (see ``deepops.cpu.conv`` for the Numba kernels):

* forward: Numba im2col into a reused per-thread scratch buffer, laid out (N, G, Cg*R*S, P*Q), then one batched
  GEMM ``W[g] @ col[n, g]`` through ``torch.matmul`` (MKL SGEMM/DGEMM), which writes the NCHW output directly; a
  1x1, stride-1, unpadded convolution skips im2col (the input already is the column matrix); bias by a Numba pass;
* backward-input: the GEMM ``W[g]^T @ grad_out[n, g]`` into the scratch buffer, then a Numba col2im (a gather over
  input rows: no atomics, deterministic);
* backward-weight: im2col in the (Cg*R*S, N*P*Q) layout, so that a single GEMM per group sums over the batch too;
* backward-bias: a Numba reduction over (N, P, Q) per channel, accumulated in float64;
* conv_transpose2d: the backward-input path with its input as ``grad_output``, plus the bias.

Why the GEMM is MKL's and not a Numba loop: the arithmetic of a convolution is a GEMM, and MKL's AVX-512 kernels
run it near the core's peak; a Numba loop cannot keep accumulators in vector registers across the reduction, so it
stays load/store-bound at a fraction of that.  The data movement around it (im2col/col2im/bias) is Numba's.
Threads: the Numba loops and MKL run one after the other on ONE OpenMP pool (PyTorch's; see ``deepops._threads``
for why two pools are 2-100x slower on a busy 2-core box), never nested.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format

from .._library import check_float, define
from ..cpu import conv as K

_HALF = (torch.float16, torch.bfloat16)

# ------------------------------------------------------------------------------------------------------- checks


def _pair(v, name: str, op: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints -> a pair; anything else is a clear error naming ``name``."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"deepops.{op}: '{name}' must be an int or a pair of ints, got {tuple(v)!r}")
        a, b = v
    else:
        a = b = v
    for e in (a, b):
        if isinstance(e, bool) or not isinstance(e, (int, torch.SymInt)):
            raise TypeError(f"deepops.{op}: '{name}' must be an int or a pair of ints, got {v!r}")
    return (a, b)


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
    if weight.device != input.device:
        raise RuntimeError(f"deepops.{op}: 'weight' is on {weight.device} but 'input' is on {input.device}")
    if weight.dtype != input.dtype:
        raise TypeError(f"deepops.{op}: 'weight' has dtype {weight.dtype} but 'input' has dtype {input.dtype}")
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
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"deepops.{op}: 'bias' must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.device != input.device:
            raise RuntimeError(f"deepops.{op}: 'bias' is on {bias.device} but 'input' is on {input.device}")
        if bias.dtype != input.dtype:
            raise TypeError(f"deepops.{op}: 'bias' has dtype {bias.dtype} but 'input' has dtype {input.dtype}")
        if bias.dim() != 1 or bias.shape[0] != c_out:
            raise ValueError(
                f"deepops.{op}: 'bias' must have shape ({c_out},) (one per output channel), got {tuple(bias.shape)}"
            )


def _check_geometry(stride, padding, dilation, op: str) -> None:
    for name, v, low in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        if len(v) != 2:
            raise ValueError(f"deepops.{op}: '{name}' must be a pair of ints, got {tuple(v)!r}")
        if v[0] < low or v[1] < low:
            need = "positive" if low else "non-negative"
            raise ValueError(f"deepops.{op}: '{name}' must be {need}, got {tuple(v)}")


def _out_size(H, W, k, stride, padding, dilation):
    P = (H + 2 * padding[0] - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    Q = (W + 2 * padding[1] - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    return P, Q


def _check_conv(input, weight, bias, stride, padding, dilation, groups, op="conv2d"):
    """Every check of a convolution; returns the output size (P, Q)."""
    _check_tensors(input, weight, bias, groups, op, transposed=False)
    _check_geometry(stride, padding, dilation, op)
    H, W = input.shape[2], input.shape[3]
    R, S = weight.shape[2], weight.shape[3]
    eh, ew = dilation[0] * (R - 1) + 1, dilation[1] * (S - 1) + 1
    if H + 2 * padding[0] < eh or W + 2 * padding[1] < ew:
        raise ValueError(
            f"deepops.{op}: kernel size ({R}, {S}) (dilated: ({eh}, {ew})) is larger than the padded input "
            f"({H + 2 * padding[0]}, {W + 2 * padding[1]}) ('input' {H}x{W} with 'padding' {tuple(padding)})"
        )
    return _out_size(H, W, (R, S), stride, padding, dilation)


def _transposed_size(H, W, k, stride, padding, output_padding, dilation):
    Ho = (H - 1) * stride[0] - 2 * padding[0] + dilation[0] * (k[0] - 1) + output_padding[0] + 1
    Wo = (W - 1) * stride[1] - 2 * padding[1] + dilation[1] * (k[1] - 1) + output_padding[1] + 1
    return Ho, Wo


def _check_conv_t(input, weight, bias, stride, padding, output_padding, groups, dilation, op="conv_transpose2d"):
    """Every check of a transposed convolution; returns the output size (Ho, Wo)."""
    _check_tensors(input, weight, bias, groups, op, transposed=True)
    _check_geometry(stride, padding, dilation, op)
    if len(output_padding) != 2:
        raise ValueError(f"deepops.{op}: 'output_padding' must be a pair of ints, got {tuple(output_padding)!r}")
    for i in range(2):
        if output_padding[i] < 0 or output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(
                f"deepops.{op}: 'output_padding' {tuple(output_padding)} must be non-negative and smaller than "
                f"max('stride', 'dilation') = ({max(stride[0], dilation[0])}, {max(stride[1], dilation[1])})"
            )
    Ho, Wo = _transposed_size(input.shape[2], input.shape[3], weight.shape[2:], stride, padding, output_padding, dilation)
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
    return Ho, Wo


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
    if other.device != grad_output.device:
        raise RuntimeError(f"deepops.{op}: '{other_name}' is on {other.device} but 'grad_output' is on {grad_output.device}")
    if other.dtype != grad_output.dtype:
        raise TypeError(f"deepops.{op}: '{other_name}' has dtype {other.dtype} but 'grad_output' has dtype {grad_output.dtype}")


def _size4(size, name, op):
    if len(size) != 4:
        raise ValueError(f"deepops.{op}: '{name}' must have 4 entries, got {list(size)}")
    return list(size)


def _check_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    op = "conv2d_backward_input"
    _check_grad_output(grad_output, weight, "weight", op)
    input_size = _size4(input_size, "input_size", op)
    N, C, H, W = input_size
    if groups <= 0 or C % groups or weight.shape[1] * groups != C or weight.shape[0] % groups:
        raise ValueError(
            f"deepops.{op}: 'weight' {tuple(weight.shape)} with 'groups'={groups} does not fit 'input_size' {input_size}"
        )
    _check_geometry(stride, padding, dilation, op)
    P, Q = _out_size(H, W, weight.shape[2:], stride, padding, dilation)
    want = (N, weight.shape[0], P, Q)
    if tuple(grad_output.shape) != want:
        raise ValueError(f"deepops.{op}: 'grad_output' has shape {tuple(grad_output.shape)}, expected {want}")
    return input_size


def _check_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    op = "conv2d_backward_weight"
    _check_grad_output(grad_output, input, "input", op)
    weight_size = _size4(weight_size, "weight_size", op)
    K_, Cg, R, S = weight_size
    C = input.shape[1]
    if groups <= 0 or C % groups or Cg * groups != C or K_ % groups:
        raise ValueError(
            f"deepops.{op}: 'weight_size' {weight_size} with 'groups'={groups} does not fit 'input' {tuple(input.shape)}"
        )
    _check_geometry(stride, padding, dilation, op)
    P, Q = _out_size(input.shape[2], input.shape[3], (R, S), stride, padding, dilation)
    want = (input.shape[0], K_, P, Q)
    if tuple(grad_output.shape) != want:
        raise ValueError(f"deepops.{op}: 'grad_output' has shape {tuple(grad_output.shape)}, expected {want}")
    return weight_size


# -------------------------------------------------------------------------------------------- memory formats


def _conv_format(a: torch.Tensor, b: torch.Tensor) -> torch.memory_format:
    """The memory format of a convolution's result from its two tensor operands (input and weight; for the backward
    ops grad_output and weight / input): channels_last if EITHER suggests channels_last, else contiguous.

    PyTorch's rule, measured on PyTorch 2.13 (CPU, float32/float64/float16/bfloat16): conv2d, conv_transpose2d and
    both gradients of ``aten.convolution_backward`` (the weight gradient too) come out channels_last when the input
    or the weight is channels_last, whatever the format of grad_output.  In PyTorch's source (ATen/native/ConvUtils.h
    and Convolution.cpp, ``_determine_backend_memory_format``) the CPU back ends decide so in
    ``mkldnn_conv_use_channels_last`` (oneDNN: float32, 16-bit) and ``thnn_conv_use_channels_last`` (the slow
    paths: float64), and CUDA in ``cudnn_conv_suggest_memory_format`` - the same "input or weight" test, except that
    cuDNN keeps float64 contiguous; deepops applies the rule to every dtype on both devices.
    """
    cl = any(t.dim() == 4 and suggest_memory_format(t) == torch.channels_last for t in (a, b))
    return torch.channels_last if cl else torch.contiguous_format


def _empty4(shape, like: torch.Tensor, fmt: torch.memory_format, dtype=None) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=fmt)


def _finish(out: torch.Tensor, dtype, fmt: torch.memory_format) -> torch.Tensor:
    """The computed NCHW result in the op's dtype and memory format (an empty one gets the strides of
    :func:`_empty4`, as the fake implementation's)."""
    return out.to(dtype=dtype).contiguous(memory_format=fmt)


# ------------------------------------------------------------------------------------------------ CPU (Numba)

_tls = threading.local()
_SCRATCH_KEEP_BYTES = 64 << 20


def _scratch(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat per-thread scratch buffer of at least ``numel`` elements, reused between calls.

    Reuse matters: a freshly allocated im2col buffer of a few MB costs a page fault per 4 KiB on first touch, which
    on small convolutions is more time than the arithmetic.  One buffer per dtype and thread (thread-local, so two
    threads running convolutions never share one); it only grows, up to ``_SCRATCH_KEEP_BYTES``: larger requests
    (big batches, where a page fault per 4 KiB is small next to the GEMM) get a buffer of their own, not kept.
    """
    if numel * torch.finfo(dtype).bits // 8 > _SCRATCH_KEEP_BYTES:
        return torch.empty(numel, dtype=dtype)
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    b = bufs.get(dtype)
    if b is None or b.numel() < numel:
        b = bufs[dtype] = torch.empty(max(numel, 1), dtype=dtype)
    return b[:numel]


def _compute_dtype(dtype):
    return torch.float32 if dtype in _HALF else dtype


def _is_pointwise(R, S, stride, padding, in_hw, out_hw):
    """A 1x1, stride-1, unpadded convolution whose output plane is its input plane: a plain GEMM, no im2col.

    The planes must be compared too: in a transposed convolution, output_padding makes the input plane of
    backward-input larger than its output plane even for a 1x1 kernel."""
    pointwise = R == 1 and S == 1 and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
    return pointwise and tuple(in_hw) == tuple(out_hw)


def _flat(t: torch.Tensor):
    """A contiguous tensor as a flat NumPy array (shared memory)."""
    return t.view(-1).numpy()


def _im2col(x, R, S, P, Q, stride, padding, dilation, batch_inside=False):
    """The im2col matrix of x (N, C, H, W) contiguous: a (N, C*R*S, P*Q) view of a scratch buffer, or with
    ``batch_inside`` a (C*R*S, N*P*Q) one (the layout of the weight gradient's GEMM)."""
    N, C = x.shape[0], x.shape[1]
    col = _scratch(N * C * R * S * P * Q, x.dtype)
    H, W = x.shape[2], x.shape[3]
    K.im2col(_flat(x), N, C, H, W, R, S, *stride, *padding, *dilation, P, Q, batch_inside, col.numpy())
    return col.view(C * R * S, N * P * Q) if batch_inside else col.view(N, C * R * S, P * Q)


def _conv_forward(x, w, stride, padding, dilation, groups):
    """conv2d of x (N, C, H, W) and w (K, Cg, R, S), both contiguous in the compute dtype: (N, K, P, Q) NCHW."""
    N, C, H, W = x.shape
    Kc, Cg, R, S = w.shape
    P, Q = _out_size(H, W, (R, S), stride, padding, dilation)
    G = groups
    out = torch.empty((N, Kc, P, Q), dtype=x.dtype)
    if out.numel() == 0:
        return out
    if C == 0 or H * W == 0:  # an empty reduction, or every window in the padding: zeros
        return out.zero_()
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        col = x.view(N, G, Cg, H * W)
    else:
        col = _im2col(x, R, S, P, Q, stride, padding, dilation).view(N, G, Cg * R * S, P * Q)
    torch.matmul(w.view(G, Kc // G, Cg * R * S), col, out=out.view(N, G, Kc // G, P * Q))
    return out


def _conv_backward_input(go, w, input_size, stride, padding, dilation, groups):
    """dL/dinput (N, C, H, W) NCHW from go (N, K, P, Q) and w (K, Cg, R, S), both contiguous, compute dtype."""
    N, C, H, W = input_size
    Kc, Cg, R, S = w.shape
    P, Q = go.shape[2], go.shape[3]
    G = groups
    gx = torch.empty((N, C, H, W), dtype=go.dtype)
    if gx.numel() == 0:
        return gx
    if Kc == 0 or P * Q == 0:
        return gx.zero_()
    wt = w.view(G, Kc // G, Cg * R * S).transpose(1, 2)
    gov = go.view(N, G, Kc // G, P * Q)
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        torch.matmul(wt, gov, out=gx.view(N, G, Cg, H * W))
        return gx
    gcol = _scratch(N * C * R * S * P * Q, go.dtype).view(N, G, Cg * R * S, P * Q)
    torch.matmul(wt, gov, out=gcol)
    K.col2im(_flat(gcol), N, C, H, W, R, S, *stride, *padding, *dilation, P, Q, _flat(gx))
    return gx


def _conv_backward_weight(go, x, weight_size, stride, padding, dilation, groups):
    """dL/dweight (K, Cg, R, S) from go (N, K, P, Q) and x (N, C, H, W), both contiguous, compute dtype."""
    Kc, Cg, R, S = weight_size
    N, C, H, W = x.shape
    P, Q = go.shape[2], go.shape[3]
    G = groups
    gw = torch.empty((Kc, Cg, R, S), dtype=go.dtype)
    if gw.numel() == 0:
        return gw
    if N * P * Q == 0 or H * W == 0:  # nothing to sum over, or every window in the padding
        return gw.zero_()
    # (G, Kg, N*PQ): the batch goes inside the reduction dimension, so that one GEMM per group does the whole sum
    go_t = go.view(N, G, Kc // G, P * Q).permute(1, 2, 0, 3).reshape(G, Kc // G, N * P * Q)
    if _is_pointwise(R, S, stride, padding, (H, W), (P, Q)):
        col = x.view(N, C, H * W).transpose(0, 1).reshape(G, Cg, N * H * W)
    else:
        col = _im2col(x, R, S, P, Q, stride, padding, dilation, batch_inside=True).view(G, Cg * R * S, N * P * Q)
    torch.matmul(go_t, col.transpose(1, 2), out=gw.view(G, Kc // G, Cg * R * S))
    return gw


def _add_bias(out, bias):
    if bias is not None and out.numel():
        N, Kc = out.shape[0], out.shape[1]
        K.add_bias(_flat(out), N, Kc, out.numel() // max(N * Kc, 1), bias.numpy())


def _cpu_in(t, cdt):
    return t.detach().to(cdt).contiguous()


def _conv2d_cpu(input, weight, bias, stride, padding, dilation, groups):
    _check_conv(input, weight, bias, stride, padding, dilation, groups)
    cdt = _compute_dtype(input.dtype)
    out = _conv_forward(_cpu_in(input, cdt), _cpu_in(weight, cdt), stride, padding, dilation, groups)
    _add_bias(out, None if bias is None else _cpu_in(bias, cdt))
    return _finish(out, input.dtype, _conv_format(input, weight))


def _conv2d_backward_input_cpu(grad_output, weight, input_size, stride, padding, dilation, groups):
    input_size = _check_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups)
    cdt = _compute_dtype(grad_output.dtype)
    gx = _conv_backward_input(
        _cpu_in(grad_output, cdt), _cpu_in(weight, cdt), input_size, stride, padding, dilation, groups
    )
    return _finish(gx, grad_output.dtype, _conv_format(grad_output, weight))


def _conv2d_backward_weight_cpu(grad_output, input, weight_size, stride, padding, dilation, groups):
    weight_size = _check_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups)
    cdt = _compute_dtype(grad_output.dtype)
    gw = _conv_backward_weight(
        _cpu_in(grad_output, cdt), _cpu_in(input, cdt), weight_size, stride, padding, dilation, groups
    )
    return _finish(gw, grad_output.dtype, _conv_format(grad_output, input))


def _check_bias_grad(grad_output):
    check_float(grad_output, "grad_output", "conv2d_backward_bias")
    if grad_output.dim() != 4:
        raise ValueError(
            f"deepops.conv2d_backward_bias: 'grad_output' must be 4-D (N, C_out, P, Q), got {tuple(grad_output.shape)}"
        )


def _conv2d_backward_bias_cpu(grad_output):
    _check_bias_grad(grad_output)
    N, Kc = grad_output.shape[0], grad_output.shape[1]
    out = torch.zeros(Kc, dtype=torch.float64)
    if grad_output.numel():
        g = _cpu_in(grad_output, _compute_dtype(grad_output.dtype))
        K.bias_grad(_flat(g), N, Kc, g.numel() // (N * Kc), out.numpy())
    return out.to(grad_output.dtype)


def _conv_transpose2d_cpu(input, weight, bias, stride, padding, output_padding, groups, dilation):
    Ho, Wo = _check_conv_t(input, weight, bias, stride, padding, output_padding, groups, dilation)
    cdt = _compute_dtype(input.dtype)
    size = [input.shape[0], weight.shape[1] * groups, Ho, Wo]
    out = _conv_backward_input(_cpu_in(input, cdt), _cpu_in(weight, cdt), size, stride, padding, dilation, groups)
    _add_bias(out, None if bias is None else _cpu_in(bias, cdt))
    return _finish(out, input.dtype, _conv_format(input, weight))


# ------------------------------------------------------------------------------------------------------- fakes


def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    P, Q = _check_conv(input, weight, bias, stride, padding, dilation, groups)
    return _empty4((input.shape[0], weight.shape[0], P, Q), input, _conv_format(input, weight))


def _conv2d_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    input_size = _check_backward_input(grad_output, weight, input_size, stride, padding, dilation, groups)
    return _empty4(input_size, grad_output, _conv_format(grad_output, weight))


def _conv2d_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    weight_size = _check_backward_weight(grad_output, input, weight_size, stride, padding, dilation, groups)
    return _empty4(weight_size, grad_output, _conv_format(grad_output, input))


def _conv2d_backward_bias_fake(grad_output):
    _check_bias_grad(grad_output)
    return grad_output.new_empty((grad_output.shape[1],))


def _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
    Ho, Wo = _check_conv_t(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _empty4((input.shape[0], weight.shape[1] * groups, Ho, Wo), input, _conv_format(input, weight))


_GEOM = "int[2] stride, int[2] padding, int[2] dilation, int groups"
define(f"conv2d(Tensor input, Tensor weight, Tensor? bias, {_GEOM}) -> Tensor", _conv2d_cpu, _conv2d_fake)
define(
    f"conv2d_backward_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, {_GEOM}) -> Tensor",
    _conv2d_backward_input_cpu,
    _conv2d_backward_input_fake,
)
define(
    f"conv2d_backward_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, {_GEOM}) -> Tensor",
    _conv2d_backward_weight_cpu,
    _conv2d_backward_weight_fake,
)
define("conv2d_backward_bias(Tensor grad_output) -> Tensor", _conv2d_backward_bias_cpu, _conv2d_backward_bias_fake)
define(
    "conv_transpose2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
    "int[2] output_padding, int groups, int[2] dilation) -> Tensor",
    _conv_transpose2d_cpu,
    _conv_transpose2d_fake,
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
    grad = grad.contiguous(memory_format=_conv_format(input, weight))
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
    fmt = _conv_format(input, weight)
    grad = grad.contiguous(memory_format=fmt)  # as in _conv2d_bwd
    gi = gw = gb = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        # with output_padding >= stride (allowed when dilation > stride) the convolution of the output has rows and
        # columns past the input's: they meet no input position (their gradient is cut off, their input is 0)
        P, Q = _out_size(grad.shape[2], grad.shape[3], weight.shape[2:], *ctx.geom[:3])
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


def _batched(input, op):
    """(input as 4-D, whether it was unbatched); checks the type first so the message is the clear one."""
    check_float(input, "input", op)
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise ValueError(
            f"deepops.{op}: 'input' must be 4-D (N, C, H, W) or 3-D (C, H, W) unbatched, got shape {tuple(input.shape)}"
        )
    return input, False


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> torch.Tensor:
    """``torch.nn.functional.conv2d``: 2-D cross-correlation of ``input`` (N, C_in, H, W) or (C_in, H, W) with
    ``weight`` (C_out, C_in/groups, kH, kW), plus ``bias`` (C_out,).

    ``stride``, ``dilation``: int or pair; ``padding``: int, pair, ``'valid'`` (no padding) or ``'same'`` (output
    as large as the input; stride 1 only; an even kernel's extra row/column is padded at the bottom/right as in
    PyTorch).  ``groups`` splits the channels (``groups == C_in`` is a depthwise convolution).
    """
    op = "conv2d"
    x, unbatched = _batched(input, op)
    _check_tensors(x, weight, bias, groups, op, transposed=False)
    stride = _pair(stride, "stride", op)
    dilation = _pair(dilation, "dilation", op)
    _check_geometry(stride, (0, 0), dilation, op)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"deepops.{op}: padding='same' is not supported for strided convolutions ('stride' {stride})")
            total = [dilation[i] * (weight.shape[2 + i] - 1) for i in range(2)]
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] - 2 * padding[0], total[1] - 2 * padding[1])
            if extra != (0, 0):
                x = F.pad(x, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"deepops.{op}: 'padding' must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        padding = _pair(padding, "padding", op)
    _check_conv(x, weight, bias, stride, padding, dilation, groups, op)
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
    x, unbatched = _batched(input, op)
    _check_tensors(x, weight, bias, groups, op, transposed=True)
    if isinstance(padding, str):
        raise ValueError(f"deepops.{op}: 'padding' must be an int or a pair of ints, got {padding!r}")
    stride = _pair(stride, "stride", op)
    padding = _pair(padding, "padding", op)
    output_padding = _pair(output_padding, "output_padding", op)
    dilation = _pair(dilation, "dilation", op)
    _check_conv_t(x, weight, bias, stride, padding, output_padding, groups, dilation, op)
    _check_input_plane(x, op)
    out = ops.conv_transpose2d(
        x, weight, bias, list(stride), list(padding), list(output_padding), groups, list(dilation)
    )
    return out.squeeze(0) if unbatched else out
