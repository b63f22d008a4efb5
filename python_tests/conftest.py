"""Shared test fixtures and the rules every test uses: devices and dtypes, reproducible seeds (stable_seed), the
tolerance table (TOL) and the memory layouts (layout, layouts).  GPU tests carry the ``cuda`` mark and skip cleanly
where there is no usable GPU or the CUDA extension was not built."""

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


# ------------------------------------------------------------------------------------------------- tolerances

#: how far an op may be from PyTorch (or from a float64 reference rounded to the dtype), per dtype: the one table
#: that every inexact comparison of the tests uses (bit-exact ones, such as activations, pooled values and NMS
#: indices, use rtol=0, atol=0).  Sums of many products (convolutions) scale ``atol`` by the largest magnitude of
#: the expected values (assert_close_scaled).
#:
#: Three tables used to disagree: the convolution tests' (float64 1e-9, float32 1e-4, float16 2e-2, bfloat16
#: 5e-2 / 1e-1), the box_iou fuzzer's (1e-10, 2e-4, 1e-2, 5e-2) and max pooling's inexact gradients' (1e-5, and
#: 1e-2 for 16-bit).  Kept: float64 1e-10, as every test passes with it by far (largest error measured: 5e-15);
#: float32 1e-4 (largest error measured on the CPU: 1e-6 of the scale), not pooling's 1e-5, which applies only on a
#: GPU, against PyTorch's CUDA kernels' summation order, and has never run; float16 / bfloat16 the convolution
#: tests' values: on the CPU the 16-bit comparisons are exact with the Numba kernels and within 4e-6 of the scale
#: with the CUDA kernels run by the emulator (both compute in float32 and round once, as PyTorch's CPU does), so
#: only a GPU, against cuDNN, can say what they need, and none has run these tests yet.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float16: dict(rtol=2e-2, atol=2e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=1e-1),
}


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """Same shape and dtype, and values within TOL[dtype] with ``atol`` scaled by the largest magnitude of the
    expected values (at least 1): the comparison for sums of many products, whose rounding error grows with them."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    scale = max(1.0, expected.detach().abs().max().item()) if expected.numel() else 1.0
    t = TOL[dtype]
    torch.testing.assert_close(
        actual.detach().double(), expected.detach().double(), rtol=t["rtol"], atol=t["atol"] * scale, msg=what
    )


# ---------------------------------------------------------------------------------------------- memory layouts

#: the memory layouts the op tests run their inputs in (the same values in each):
#:
#: * ``contiguous``: row-major;
#: * ``channels_last``: NHWC (4-D tensors only);
#: * ``last_two_swapped``: dense, with the strides of the last two dims swapped (an image stored transposed, W
#:   slower than H; a 2-D tensor such as a box list stored column-major);
#: * ``first_last_swapped``: dense, with the strides of the first and last dims swapped (the batch dim fastest);
#: * ``strided``: every other element of a twice as wide last dim (not dense);
#: * ``misaligned``: contiguous, its data one element past the start of its allocation (not 16-byte aligned: the scalar
#:   paths of vectorised kernels).
LAYOUTS = ("contiguous", "channels_last", "last_two_swapped", "first_last_swapped", "strided", "misaligned")

# the rank each layout needs to differ from the others (first_last_swapped of a 2-D tensor is last_two_swapped)
_MIN_DIM = {"contiguous": 0, "channels_last": 4, "last_two_swapped": 2, "first_last_swapped": 3, "strided": 1,
            "misaligned": 0}


def has_layout(x: torch.Tensor, kind: str) -> bool:
    """Whether ``kind`` is a layout of its own for a tensor of x's rank (channels_last needs 4-D, ...)."""
    if kind not in _MIN_DIM:
        raise ValueError(f"unknown layout {kind!r}; one of {LAYOUTS}")
    return x.dim() == 4 if kind == "channels_last" else x.dim() >= _MIN_DIM[kind]


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """x's values in the memory layout ``kind`` (one of LAYOUTS); contiguous where x's rank has no such layout."""
    if not has_layout(x, kind) or kind == "contiguous":
        return x.contiguous()
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "last_two_swapped":
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "first_last_swapped":
        return x.transpose(0, -1).contiguous().transpose(0, -1)
    if kind == "strided":
        big = torch.zeros(*x.shape[:-1], x.shape[-1] * 2, dtype=x.dtype, device=x.device)
        big[..., ::2] = x
        return big[..., ::2]
    flat = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)  # misaligned
    out = flat[1:].view(x.shape)
    out.copy_(x)
    return out


def layouts(x: torch.Tensor, kinds=LAYOUTS):
    """(name, tensor) for each layout of ``kinds`` that x's rank has, in the order of ``kinds``."""
    for kind in kinds:
        if has_layout(x, kind):
            yield kind, layout(x, kind)
