"""The rules every op shares, each written once: argument checks, argument pairs, output sizes, the compute dtype,
the memory format and unbatched inputs.

Every op module (its checks, its fake), every CPU kernel and every public function takes these from here; the C++
binding has the output-size formulas in one header of its own (``csrc/kernels/shapes.h``), since it cannot import
Python.  Messages name the op and the argument: ``deepops.conv2d: 'stride' must be positive, got (0, 1)``.
"""

from __future__ import annotations

import numpy as np
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

# ------------------------------------------------------------------------------------------------------- checks


def check_tensor(t, arg: str, op: str, optional: bool = False) -> None:
    """Raise a clear TypeError unless ``t`` is a tensor (or None, when ``optional``).  The public functions call it
    for their tensor arguments before calling an op, since the dispatcher's own message for a non-tensor is a
    RuntimeError about a "Cast error"; everything else is the op's check."""
    if not isinstance(t, torch.Tensor) and not (optional and t is None):
        kind = "a torch.Tensor or None" if optional else "a torch.Tensor"
        raise TypeError(f"deepops.{op}: '{arg}' must be {kind}, got {type(t).__name__}")


def check_float(t, arg: str, op: str) -> None:
    """Raise a clear TypeError unless ``t`` is a floating-point tensor of a supported dtype."""
    check_tensor(t, arg, op)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"deepops.{op}: '{arg}' has dtype {t.dtype}; supported dtypes are float16, bfloat16, float32 and float64"
        )


def check_same(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], op: str, shape: bool = True) -> None:
    """Raise a clear error unless ``a`` and ``b`` agree in device, dtype (and shape).  ``a`` must be a tensor."""
    check_tensor(b, names[1], op)
    if a.device != b.device:
        raise RuntimeError(f"deepops.{op}: '{names[0]}' is on {a.device} but '{names[1]}' is on {b.device}")
    if a.dtype != b.dtype:
        raise TypeError(f"deepops.{op}: '{names[0]}' has dtype {a.dtype} but '{names[1]}' has dtype {b.dtype}")
    if shape and a.shape != b.shape:
        raise ValueError(
            f"deepops.{op}: '{names[0]}' has shape {tuple(a.shape)} but '{names[1]}' has shape {tuple(b.shape)}"
        )


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer, torch.SymInt))


def pair(value, arg: str, op: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints (list, tuple, torch.Size) as a pair, as ``torch.nn.modules.utils``
    reads ``kernel_size``, ``stride``, ...; TypeError for a non-int, ValueError for a wrong length.  NumPy integers
    become Python ints; symbolic ints (``torch.compile``) pass through."""
    if type(value) is int:  # the common cases first: this runs several times per call of an op
        return (value, value)
    if type(value) in (list, tuple) and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return (value[0], value[1])
    vals = tuple(value) if isinstance(value, (list, tuple, torch.Size)) else (value,)
    if not all(_is_int(v) for v in vals):
        raise TypeError(f"deepops.{op}: '{arg}' must be an int or a pair of ints, got {value!r}")
    if len(vals) not in (1, 2):
        raise ValueError(f"deepops.{op}: '{arg}' must be an int or a pair of ints, got {value!r}")
    vals = tuple(int(v) if isinstance(v, np.integer) else v for v in vals)
    return (vals[0], vals[0]) if len(vals) == 1 else vals


def check_geometry(op: str, **pairs) -> None:
    """``stride``/``dilation``/``kernel_size`` positive, ``padding``/``output_padding`` non-negative, each a pair."""
    for name, v in pairs.items():
        if len(v) != 2:
            raise ValueError(f"deepops.{op}: '{name}' must be a pair of ints, got {tuple(v)!r}")
        low = 0 if "padding" in name else 1
        if v[0] < low or v[1] < low:
            need = "non-negative" if low == 0 else "positive"
            raise ValueError(f"deepops.{op}: '{name}' must be {need}, got {tuple(v)}")


# ------------------------------------------------------------------------------------------------- output sizes


def conv_out_size(n, k, s, p, d):
    """A convolution's output extent along one axis: ``floor((n + 2p - d(k - 1) - 1) / s) + 1``."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_transpose_out_size(n, k, s, p, output_padding, d):
    """A transposed convolution's output extent along one axis: ``(n - 1)s - 2p + d(k - 1) + output_padding + 1``."""
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def pool_out_size(n, k, s, p, d, ceil_mode: bool):
    """A pooling's output extent along one axis; with ``ceil_mode`` the division rounds up, but a last window that
    would start in the right padding is dropped (PyTorch's rule)."""
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


# The same per output plane (height, width), with the pairs (kernel, stride, ...) taken per axis: the forms every
# op and CPU kernel uses (written out rather than mapped, since they run a few times per call of an op)


def conv_out_hw(hw, k, s, p, d) -> tuple:
    return conv_out_size(hw[0], k[0], s[0], p[0], d[0]), conv_out_size(hw[1], k[1], s[1], p[1], d[1])


def conv_transpose_out_hw(hw, k, s, p, output_padding, d) -> tuple:
    return (conv_transpose_out_size(hw[0], k[0], s[0], p[0], output_padding[0], d[0]),
            conv_transpose_out_size(hw[1], k[1], s[1], p[1], output_padding[1], d[1]))


def pool_out_hw(hw, k, s, p, d, ceil_mode: bool) -> tuple:
    return pool_out_size(hw[0], k[0], s[0], p[0], d[0], ceil_mode), pool_out_size(hw[1], k[1], s[1], p[1], d[1], ceil_mode)


# ----------------------------------------------------------------------------------------------- compute dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a CPU kernel computes in: float32 for float16/bfloat16 (Numba has no bfloat16 and only partial
    float16; PyTorch's CPU kernels accumulate these in float32 too), the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# ----------------------------------------------------------------------------------------------- memory format


def _channels_last_strides(sizes, strides) -> bool:
    """c10's ``is_channels_last_strides_2d`` (what ``Tensor.suggest_memory_format()`` decides with)."""
    if strides[1] == 0:
        return False
    smin = 0
    for dim in (1, 3, 2, 0):
        if sizes[dim] == 0 or strides[dim] < smin:
            return False
        if dim == 0 and smin == strides[1]:
            return False
        smin = strides[dim] * sizes[dim]
    return True


def is_channels_last(t: torch.Tensor) -> bool:
    """``suggest_memory_format(t) == torch.channels_last`` for a tensor (False for anything but 4-D).

    PyTorch's own Python version (``torch._prims_common.suggest_memory_format``) costs about 12 us a call (it
    guards every comparison for symbolic shapes), 30 times this one, and a convolution asks twice per call; so plain
    int strides take c10's rule written out here (``python_tests/test_rules.py`` checks the two agree on every
    stride pattern of small 4-D tensors) and only symbolic ones (``torch.compile``) go to PyTorch's."""
    if t.dim() != 4 or t.layout != torch.strided:
        return False
    sizes, strides = t.shape, t.stride()
    if all(type(v) is int for v in (*sizes, *strides)):
        return _channels_last_strides(sizes, strides)
    from torch._prims_common import suggest_memory_format

    return suggest_memory_format(t) == torch.channels_last


def memory_format(*tensors: torch.Tensor) -> torch.memory_format:
    """channels_last when ANY of ``tensors`` suggests channels_last, else contiguous (PyTorch's rule for the
    result of a convolution from (input, weight) and of a pooling from its input)."""
    return torch.channels_last if any(is_channels_last(t) for t in tensors) else torch.contiguous_format


# ------------------------------------------------------------------------------------------------- unbatched


def batched(input, op: str) -> tuple[torch.Tensor, bool]:
    """An input of ``(N, C, H, W)`` or unbatched ``(C, H, W)`` as 4-D, and whether it was unbatched (the public
    functions squeeze the result again).  Checks the type first so that the message is the clear one."""
    check_float(input, "input", op)
    if input.dim() == 3:
        return input.unsqueeze(0), True
    if input.dim() != 4:
        raise ValueError(
            f"deepops.{op}: 'input' must be 4-D (N, C, H, W) or 3-D (C, H, W) unbatched, got shape {tuple(input.shape)}"
        )
    return input, False
