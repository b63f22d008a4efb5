"""``deepops info``: what is installed, what was built, and which backend each device will use."""

from __future__ import annotations

import platform

import torch

from . import _ext, _library, _threads


def info() -> dict:
    """A description of this installation as a dict (printed by ``deepops info``)."""
    import numba
    import numpy

    from . import __version__

    cfg = _ext.build_config()
    loaded = _ext.cuda_extension_loaded()
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = f"{p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB)"
    return {
        "deepops": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numba": numba.__version__,
        "numba_threading_layer": _numba_threading_layer(),
        "numba_shares_torch_openmp": _threads.SHARED_OPENMP,
        "numpy": numpy.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_extension_built": bool(cfg.get("cuda_requested")),
        "cuda_extension_loaded": loaded,
        "cuda_extension_error": None if loaded else _ext.load_error(),
        "cuda_arch_list": cfg.get("cuda_arch_list"),
        "built_with_torch": cfg.get("torch_version"),
        "gpu": gpu,
        "emulated_cuda_built": bool(cfg.get("emulated")),
        "backend_cpu": (
            "deepops CUDA kernels, emulated on the CPU (DEEPOPS_CPU_BACKEND=cuda-emu; schedule "
            f"{_ext.emulator().schedule()})"
            if _library.CPU_BACKEND == "cuda-emu"
            else "numba"
        ),
        "backend_cuda": "deepops CUDA kernels" if loaded else "unavailable (extension not built)",
        "ops": [f"deepops::{n}" for n in _library.OP_NAMES],
    }


def _numba_threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: report what is configured
        return f"not initialised yet (configured: {numba.config.THREADING_LAYER})"


def format_info(d: dict) -> str:
    width = max(len(k) for k in d)
    lines = []
    for k, v in d.items():
        if k == "ops":
            v = ", ".join(x.removeprefix("deepops::") for x in v)
        lines.append(f"{k:<{width}}  {v}")
    return "\n".join(lines)
