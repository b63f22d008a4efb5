"""Build of deepops.  Package metadata lives in pyproject.toml; this file only decides about the CUDA extension.

* ``DEEPOPS_NO_CUDA=1``: never build the extension (a pure Python install with the Numba CPU backend).
* ``FORCE_CUDA=1``: build it even when no GPU is visible (CI, containers); fails loudly if it cannot.
* otherwise: build it when torch has CUDA, a GPU is visible and the toolkit is found (``CUDA_HOME``).
* ``TORCH_CUDA_ARCH_LIST``: the GPU architectures (default below, includes sm_90 for H100/H200).
* ``DEEPOPS_EMULATE_CUDA=1``: also build ``deepops._C_emu``, the same CUDA kernels and bindings compiled as C++ for
  the CPU (csrc/kernels/arch/emulator.cpp runs them); no GPU, no nvcc and no CUDA torch needed, only the CUDA
  toolkit's headers (``CUDA_HOME``).  ``DEEPOPS_CPU_BACKEND=cuda-emu`` at import then routes the ops on CPU tensors to
  it instead of the Numba kernels (see the README's "Running the CUDA kernels on the CPU").

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
    # Headers that the pip CUDA wheels ship (cuBLAS, cuSPARSE, ... under nvidia/cu*/include), which the ATen headers
    # may include and a bare toolkit may lack.
    include_dirs = [os.path.join(HERE, "csrc")] + _cuda_include_dirs(None)
    sources = (sorted(glob.glob("csrc/kernels/*.cu")) + sorted(glob.glob("csrc/kernels/arch/*.cu"))
               + sorted(glob.glob("csrc/torch/*.cpp")))
    nvcc_flags = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-warn-spills"]
    ext = CUDAExtension(
        name="deepops._C",
        sources=sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": nvcc_flags},
    )
    cfg = dict(base, cuda_requested=True, cuda_arch_list=os.environ["TORCH_CUDA_ARCH_LIST"])
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}, cfg


def _cuda_include_dirs(cuda_home):
    """The toolkit's headers and those that the pip CUDA wheels ship (nvidia/cu*/include)."""
    dirs = [os.path.join(cuda_home, "include")] if cuda_home else []
    for site in sys.path:
        dirs += sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))
    return dirs


def _emulated_extension():
    """deepops._C_emu: the .cu sources as C++ (through generated one-line wrappers, since the C++ toolchain of
    setuptools does not take .cu files), DEEPOPS_EMULATE, the emulator, the bindings."""
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension

    cuda_home = CUDA_HOME or os.environ.get("CUDA_HOME")
    includes = _cuda_include_dirs(cuda_home)
    if not any(os.path.exists(os.path.join(d, "cuda_fp16.h")) for d in includes):
        sys.exit("deepops: DEEPOPS_EMULATE_CUDA=1 needs the CUDA toolkit's headers (cuda_fp16.h, driver_types.h); "
                 "set CUDA_HOME (e.g. /usr/local/cuda)")
    gen = os.path.join(HERE, "build", "emulated-sources")
    os.makedirs(gen, exist_ok=True)
    wrappers = []
    for cu in sorted(glob.glob("csrc/kernels/*.cu") + glob.glob("csrc/kernels/arch/*.cu")):
        name = cu[len("csrc/kernels/"):].replace("/", "_")[: -len(".cu")] + ".cpp"
        path = os.path.join(gen, name)
        text = f'#include "{os.path.join(HERE, cu)}"  // generated by setup.py: {cu} compiled as C++\n'
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
        wrappers.append(os.path.relpath(path, HERE))
    sources = wrappers + ["csrc/kernels/arch/emulator.cpp"] + sorted(glob.glob("csrc/torch/*.cpp"))
    return CppExtension(
        name="deepops._C_emu",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")] + includes,
        extra_compile_args=["-O2", "-std=c++17", "-DDEEPOPS_EMULATE", "-ffp-contract=off", "-Wno-unknown-pragmas"],
    )


ext_modules, cmdclass, config = _cuda_extension()
config["emulated"] = _flag("DEEPOPS_EMULATE_CUDA")
if config["emulated"]:
    from torch.utils.cpp_extension import BuildExtension

    ext_modules.append(_emulated_extension())
    cmdclass.setdefault("build_ext", BuildExtension.with_options(use_ninja=True))
_write_build_config(config)
setup(ext_modules=ext_modules, cmdclass=cmdclass)
