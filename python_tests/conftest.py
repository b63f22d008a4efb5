"""Shared test fixtures.  GPU tests carry the ``cuda`` mark and skip cleanly where there is no usable GPU or the
CUDA extension was not built."""

from __future__ import annotations

import os
import zlib

import pytest
import torch

import deepops
from deepops import _ext

# Differential fuzzing profiles (python_tests/test_fuzz_*.py): a fast one for CI and a long one, selected with
# DEEPOPS_FUZZ=long, that runs thousands of cases per op.
try:
    from hypothesis import HealthCheck, settings

    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=40, derandomize=True, **_common)
    settings.register_profile("long", max_examples=3000, **_common)
    settings.load_profile("long" if os.environ.get("DEEPOPS_FUZZ") == "long" else "ci")
except ImportError:  # hypothesis is a test extra; only the fuzz tests need it
    pass

HAS_CUDA = torch.cuda.is_available() and _ext.cuda_extension_loaded()

#: the ops on CPU tensors run the CUDA kernels under the emulator (DEEPOPS_CPU_BACKEND=cuda-emu)
EMULATED = _ext.cpu_backend() == "cuda-emu"
if EMULATED:
    # The CUDA binding takes float32 convolutions to TF32 tensor cores when cuDNN may (PyTorch's default); on CPU
    # tensors PyTorch itself never does, so the parity tests compare exact float32.  test_emulated.py covers TF32.
    torch.backends.cudnn.allow_tf32 = False
    # the emulated kernels are several hundred times slower than the Numba ones: fewer calls in the memory test
    # (test_reliability.py), which then still finds a leak of a few KiB per call
    os.environ.setdefault("DEEPOPS_MEMORY_CALLS", "600")
CUDA_SKIP_REASON = (
    "no CUDA GPU visible"
    if not torch.cuda.is_available()
    else f"CUDA extension not loaded: {_ext.load_error()}"
)

cuda = pytest.mark.skipif(not HAS_CUDA, reason=CUDA_SKIP_REASON)

# parametrise over this: ("cpu", "cuda"); the cuda case carries the cuda mark (and skips without a GPU)
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, cuda])]

ALL_FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "cuda" in item.keywords and not any(m.name == "skipif" for m in item.iter_markers()):
            item.add_marker(cuda)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# ------------------------------------------------------------------------------------------------------ seeds


def stable_seed(*key) -> int:
    """A seed derived from ``key`` (strings, numbers and tuples of them) that is the same in every process and on
    every machine.  ``hash()`` must not seed anything: a string's hash is salted per process (PYTHONHASHSEED), and
    a tuple's hash depends on the Python version."""
    return zlib.crc32(repr(key).encode())


def layouts(x: torch.Tensor):
    """The same values in several memory layouts: contiguous, channels_last, transposed, strided slice."""
    yield "contiguous", x.contiguous()
    if x.dim() == 4:
        yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    if x.dim() >= 2:
        yield "transposed", x.transpose(0, -1).contiguous().transpose(0, -1)
        big = torch.empty(*x.shape[:-1], x.shape[-1] * 2, dtype=x.dtype, device=x.device)
        big[..., ::2] = x
        yield "strided", big[..., ::2]
