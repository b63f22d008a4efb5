"""Build modes of setup.py that can be checked without a compiler run: a requested CUDA build never falls back."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs a CPU-only torch")
def test_force_cuda_with_cpu_torch_fails_loudly():
    env = dict(os.environ, FORCE_CUDA="1")
    env.pop("DEEPOPS_NO_CUDA", None)
    r = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0
    assert "FORCE_CUDA=1" in r.stderr and "has no CUDA" in r.stderr


def test_build_config_matches_this_install():
    """What setup.py recorded, against what this process can see for itself: the torch it was built with is the torch
    that is installed (setup.py records the one it imports, and builds without isolation), a CUDA build only with a
    CUDA torch and for sm_90 among others, and an extension recorded as built is one that can be imported."""
    from deepops import _ext

    cfg = _ext.build_config()
    assert set(cfg) >= {"cuda_requested", "torch_version", "cuda_version", "cuda_arch_list"}
    if cfg["torch_version"] is None:
        pytest.skip("no build recorded: deepops was not installed through setup.py")
    assert cfg["torch_version"] == torch.__version__, "torch changed since deepops was built: reinstall deepops"
    assert cfg["cuda_version"] == torch.version.cuda
    if torch.version.cuda is None:  # setup.py refuses FORCE_CUDA=1 with a CPU torch
        assert cfg["cuda_requested"] is False and cfg["cuda_arch_list"] is None
    if cfg["cuda_requested"]:
        assert "9.0" in cfg["cuda_arch_list"]
        assert importlib.util.find_spec("deepops._C") is not None
    else:
        assert cfg["cuda_arch_list"] is None
    if cfg.get("emulated"):
        assert importlib.util.find_spec("deepops._C_emu") is not None


def _import_deepops(**env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run(
        [sys.executable, "-c", "import deepops"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_cpu_backend_value_is_checked():
    r = _import_deepops(DEEPOPS_CPU_BACKEND="cuda-emulator")
    assert r.returncode != 0
    assert "DEEPOPS_CPU_BACKEND='cuda-emulator'" in r.stderr and "numba, cuda-emu" in r.stderr


def test_cuda_emu_backend_without_its_build_says_how_to_build():
    r = _import_deepops(DEEPOPS_CPU_BACKEND="cuda-emu")
    if r.returncode == 0:
        pytest.skip("the emulated kernels are built here")
    assert "deepops._C_emu" in r.stderr and "DEEPOPS_EMULATE_CUDA=1" in r.stderr, r.stderr
