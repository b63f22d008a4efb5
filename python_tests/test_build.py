"""Build modes of setup.py that can be checked without a compiler run: a requested CUDA build never falls back."""

from __future__ import annotations

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


def test_build_config_is_recorded():
    from deepops import _ext

    cfg = _ext.build_config()
    assert set(cfg) >= {"cuda_requested", "torch_version", "cuda_version", "cuda_arch_list"}
    if cfg["cuda_requested"]:
        assert "9.0" in cfg["cuda_arch_list"]
