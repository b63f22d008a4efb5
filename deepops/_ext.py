"""Loading the CUDA extension ``deepops._C`` and explaining, clearly, why it is not there when it is not."""

from __future__ import annotations

import importlib

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


def missing_cuda_kernel(qualname: str):
    """A CUDA kernel for ``qualname`` that raises an error saying how to build the real one."""

    def kernel(*args, **kwargs):
        raise RuntimeError(f"{qualname} got CUDA tensors but {load_error()}.\n{BUILD_HELP}")

    return kernel
