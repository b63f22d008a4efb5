"""The one op registry.

Every deepops op is declared here once, in the ``deepops`` namespace of the PyTorch dispatcher:

* its schema (``LIB.define``),
* its CPU kernel (Numba, registered from Python with ``LIB.impl(..., "CPU")``; or, with
  ``DEEPOPS_CPU_BACKEND=cuda-emu``, the CUDA kernels run on the CPU by ``deepops._C_emu``),
* its CUDA kernel (C++, registered by the extension ``deepops._C`` with ``TORCH_LIBRARY_IMPL(deepops, CUDA, m)``),
* its fake (meta) implementation (``torch.library.register_fake``) so that ``torch.compile`` can trace it,
* its autograd formula (``torch.library.register_autograd``).

The dispatcher then picks the kernel from the tensors' device: there is no ``if device == ...`` anywhere in the
Python layer.  The op modules in ``deepops.ops`` call :func:`define` for each op; this module only holds the
library object and the small amount of glue they share.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import _ext

LIB = torch.library.Library("deepops", "DEF")

#: the kernels of CPU tensors: "numba" or "cuda-emu" (DEEPOPS_CPU_BACKEND, read once at import)
CPU_BACKEND = _ext.cpu_backend()

#: names of the ops defined so far (without the namespace), in definition order
OP_NAMES: list[str] = []

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def define(schema: str, cpu: Callable, fake: Callable) -> str:
    """Declare one op: its schema, its CPU (Numba) kernel and its fake implementation.

    The CUDA kernel comes from the extension (see :func:`load_cuda_kernels`).
    Returns the qualified name ``deepops::name``.
    """
    name = schema.split("(", 1)[0].strip()
    LIB.define(schema)
    if CPU_BACKEND == "numba":  # else deepops._C_emu registers the CPU kernels (load_cuda_kernels)
        LIB.impl(name, cpu, "CPU")
    qualname = f"deepops::{name}"
    torch.library.register_fake(qualname, fake, lib=LIB)
    OP_NAMES.append(name)
    return qualname


def load_cuda_kernels() -> None:
    """Load the CUDA extension once every schema is defined; without it, CUDA calls raise a how-to-build error.
    With the cuda-emu CPU backend, load the emulated kernels too (an error if they were not built)."""
    if CPU_BACKEND == "cuda-emu":
        _ext.load_emulated()
    if not _ext.load():
        for name in OP_NAMES:
            LIB.impl(name, _ext.missing_cuda_kernel(f"deepops::{name}"), "CUDA")


def check_float(t: torch.Tensor, arg: str, op: str) -> None:
    """Raise a clear TypeError unless ``t`` is a floating-point tensor of a supported dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"deepops.{op}: '{arg}' must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"deepops.{op}: '{arg}' has dtype {t.dtype}; supported dtypes are float16, bfloat16, float32 and float64"
        )


def check_same(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], op: str, shape: bool = True) -> None:
    """Raise a clear error unless ``a`` and ``b`` agree in device, dtype (and shape)."""
    if a.device != b.device:
        raise RuntimeError(f"deepops.{op}: '{names[0]}' is on {a.device} but '{names[1]}' is on {b.device}")
    if a.dtype != b.dtype:
        raise TypeError(f"deepops.{op}: '{names[0]}' has dtype {a.dtype} but '{names[1]}' has dtype {b.dtype}")
    if shape and a.shape != b.shape:
        raise ValueError(
            f"deepops.{op}: '{names[0]}' has shape {tuple(a.shape)} but '{names[1]}' has shape {tuple(b.shape)}"
        )
