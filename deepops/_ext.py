"""Loading the extensions and explaining, clearly, why one is not there when it is not.

* ``deepops._C``: the CUDA kernels, registered for CUDA tensors.
* ``deepops._C_emu``: the same kernels and bindings built for the CPU (``DEEPOPS_EMULATE_CUDA=1`` at install), run by
  an emulated launch; registered for CPU tensors instead of the Numba kernels when ``DEEPOPS_CPU_BACKEND=cuda-emu``.
"""

from __future__ import annotations

import importlib
import os

import torch

_loaded = False
_error: str | None = None

BUILD_HELP = (
    "Rebuild deepops with its CUDA extension on a machine with a CUDA build of PyTorch and the CUDA toolkit:\n"
    "    CUDA_HOME=/usr/local/cuda FORCE_CUDA=1 pip install --no-build-isolation -e .\n"
    "(TORCH_CUDA_ARCH_LIST selects the GPU architectures; see the README's 'Building with CUDA'.)"
)


def build_config() -> dict:
    """What setup.py recorded when the package was built (CUDA or not, torch version, architectures)."""
    try:
        from . import _build_config  # written by setup.py, not tracked by git
    except ImportError:
        return {"cuda_requested": False, "torch_version": None, "cuda_version": None, "cuda_arch_list": None}
    return dict(_build_config.CONFIG)


def load() -> bool:
    """Import ``deepops._C`` (which registers the CUDA kernels with the dispatcher). Returns whether it loaded."""
    global _loaded, _error
    if _loaded or _error is not None:
        return _loaded
    try:
        importlib.import_module("deepops._C")
        _loaded = True
    except ImportError as exc:
        cfg = build_config()
        if cfg.get("cuda_requested"):
            _error = (
                f"the extension deepops._C was built for torch {cfg.get('torch_version')} "
                f"(CUDA {cfg.get('cuda_version')}) but could not be loaded with torch {torch.__version__}: {exc}. "
                "This usually means torch was upgraded after deepops was built."
            )
        else:
            _error = "deepops was installed without its CUDA extension (no CUDA toolkit or CUDA torch at build time)"
    return _loaded


def cuda_extension_loaded() -> bool:
    return load()


def load_error() -> str | None:
    load()
    return _error


#: the values of DEEPOPS_CPU_BACKEND: the Numba kernels (default) or the CUDA kernels run by the emulator
CPU_BACKENDS = ("numba", "cuda-emu")

EMU_BUILD_HELP = (
    "Build the emulated CUDA kernels (no GPU needed, only the CUDA toolkit's headers):\n"
    "    CUDA_HOME=/usr/local/cuda DEEPOPS_EMULATE_CUDA=1 pip install --no-build-isolation -e .\n"
    "or unset DEEPOPS_CPU_BACKEND to use the Numba CPU kernels."
)


def cpu_backend() -> str:
    """Which kernels run the ops on CPU tensors, from ``DEEPOPS_CPU_BACKEND`` (read once, at import)."""
    value = os.environ.get("DEEPOPS_CPU_BACKEND", "").strip().lower() or "numba"
    if value not in CPU_BACKENDS:
        raise ValueError(f"DEEPOPS_CPU_BACKEND={value!r}: expected one of {', '.join(CPU_BACKENDS)}")
    return value


def load_emulated():
    """Import ``deepops._C_emu`` (which registers the emulated CUDA kernels for CPU tensors) and return it."""
    try:
        return importlib.import_module("deepops._C_emu")
    except ImportError as exc:
        raise ImportError(
            f"DEEPOPS_CPU_BACKEND=cuda-emu but the emulated CUDA kernels (deepops._C_emu) could not be loaded: {exc}"
            f"\n{EMU_BUILD_HELP}"
        ) from exc


def emulator():
    """The emulated extension's module (schedule and launch-count controls) when it is the CPU backend, else None."""
    return load_emulated() if cpu_backend() == "cuda-emu" else None


def missing_cuda_kernel(qualname: str):
    """A CUDA kernel for ``qualname`` that raises an error saying how to build the real one."""

    def kernel(*args, **kwargs):
        raise RuntimeError(f"{qualname} got CUDA tensors but {load_error()}.\n{BUILD_HELP}")

    return kernel
