"""Build of deepops.  Package metadata lives in pyproject.toml; this file only decides about the CUDA extension.

* ``DEEPOPS_NO_CUDA=1``: never build the extension (a pure Python install with the Numba CPU backend).
* ``FORCE_CUDA=1``: build it even when no GPU is visible (CI, containers); fails loudly if it cannot.
* otherwise: build it when torch has CUDA, a GPU is visible and the toolkit is found (``CUDA_HOME``).
* ``TORCH_CUDA_ARCH_LIST``: the GPU architectures (default below, includes sm_90 for H100/H200).

A requested build that fails stops the install with the compiler's error: there is no silent CPU-only fallback.
"""

import glob
import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0+PTX"


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _write_build_config(cfg):
    path = os.path.join(HERE, "deepops", "_build_config.py")
    with open(path, "w") as f:
        f.write("# written by setup.py at build time; not tracked by git\n")
        f.write(f"CONFIG = {cfg!r}\n")


def _cuda_extension():
    """Returns (ext_modules, cmdclass, config) for this build."""
    try:
        import torch
    except ImportError:
        if _flag("FORCE_CUDA"):
            sys.exit("deepops: FORCE_CUDA=1 but torch is not installed; install torch first, then build with "
                     "pip install --no-build-isolation .")
        return [], {}, {"cuda_requested": False, "torch_version": None, "cuda_version": None, "cuda_arch_list": None}

    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension

    base = {"torch_version": torch.__version__, "cuda_version": torch.version.cuda}
    if _flag("DEEPOPS_NO_CUDA"):
        return [], {}, dict(base, cuda_requested=False, cuda_arch_list=None)
    force = _flag("FORCE_CUDA")
    if not force and not (torch.version.cuda and CUDA_HOME and torch.cuda.is_available()):
        return [], {}, dict(base, cuda_requested=False, cuda_arch_list=None)
    if torch.version.cuda is None:
        sys.exit(f"deepops: FORCE_CUDA=1 but the installed torch {torch.__version__} has no CUDA; install a CUDA "
                 "build of torch, or unset FORCE_CUDA for a CPU-only install")
    if CUDA_HOME is None:
        sys.exit("deepops: FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME (e.g. /usr/local/cuda)")

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    include_dirs = [os.path.join(HERE, "csrc")]
    # Headers that the pip CUDA wheels ship (cuBLAS, cuSPARSE, ... under nvidia/cu*/include), which the ATen headers
    # may include and a bare toolkit may lack.
    for site in sys.path:
        include_dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
    sources = sorted(glob.glob("csrc/kernels/*.cu")) + sorted(glob.glob("csrc/torch/*.cpp"))
    nvcc_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-warn-spills"]
    ext = CUDAExtension(
        name="deepops._C",
        sources=sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": nvcc_flags},
    )
    cfg = dict(base, cuda_requested=True, cuda_arch_list=os.environ["TORCH_CUDA_ARCH_LIST"])
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}, cfg


ext_modules, cmdclass, config = _cuda_extension()
_write_build_config(config)
setup(ext_modules=ext_modules, cmdclass=cmdclass)
