"""The one op registry.

Every deepops op is declared here once, in the ``deepops`` namespace of the PyTorch dispatcher:

* its schema (``LIB.define``),
* its argument check, run once per call before its CPU kernel and its fake (the rules it uses are in
  ``deepops._rules``),
* its CPU kernel (``deepops.cpu``: Numba, registered from Python with ``LIB.impl(..., "CPU")``; or, with
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


def define(schema: str, check: Callable, cpu: Callable, fake: Callable) -> str:
    """Declare one op: its schema, its argument check, its CPU (Numba) kernel and its fake implementation.

    ``check(*args)`` validates the op's arguments and raises a clear Python exception; it runs once per call, before
    the CPU kernel or the fake, which therefore see valid arguments only.  (The CUDA binding checks in C++, with the
    same rules and messages.)  The CUDA kernel comes from the extension (see :func:`load_cuda_kernels`).
    Returns the qualified name ``deepops::name``.
    """
    name = schema.split("(", 1)[0].strip()
    LIB.define(schema)
    if CPU_BACKEND == "numba":  # else deepops._C_emu registers the CPU kernels (load_cuda_kernels)
        LIB.impl(name, _checked(check, cpu), "CPU")
    qualname = f"deepops::{name}"
    torch.library.register_fake(qualname, _checked(check, fake), lib=LIB)
    OP_NAMES.append(name)
    return qualname


def _checked(check: Callable, impl: Callable) -> Callable:
    """``impl`` behind ``check``: the one place where an op's arguments are validated in Python."""

    def run(*args):
        check(*args)
        return impl(*args)

    run.__name__ = run.__qualname__ = getattr(impl, "__name__", "impl")
    return run


def load_cuda_kernels() -> None:
    """Load the CUDA extension once every schema is defined; without it, CUDA calls raise a how-to-build error.
    With the cuda-emu CPU backend, load the emulated kernels too (an error if they were not built)."""
    if CPU_BACKEND == "cuda-emu":
        _ext.load_emulated()
    if not _ext.load():
        for name in OP_NAMES:
            LIB.impl(name, _ext.missing_cuda_kernel(f"deepops::{name}"), "CUDA")
