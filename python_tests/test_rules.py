"""The shared rules of ``deepops._rules`` against PyTorch's own: memory format, argument pairs, output sizes, and
that an eager call validates its arguments once."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format

import deepops
from conftest import EMULATED
from deepops import _rules


def _strided_4d():
    """Every permutation of the dimensions of small 4-D tensors (sizes with 0s and 1s), plus slices and expands."""
    for shape in itertools.product((1, 2, 3), (1, 2, 4), (1, 3), (1, 2)):
        base = torch.empty(shape)
        for perm in itertools.permutations(range(4)):
            t = base.permute(perm).contiguous().permute(np.argsort(perm).tolist())
            yield t
            yield t[:, :, ::2]
            yield t[..., :1]
    yield torch.empty(2, 1, 3, 3).expand(2, 4, 3, 3)
    yield torch.empty(0, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    yield torch.empty(2, 3, 4, 5).transpose(0, 1)


def test_is_channels_last_is_pytorchs_rule():
    n = 0
    for t in _strided_4d():
        want = suggest_memory_format(t) == torch.channels_last
        assert _rules.is_channels_last(t) == want, (tuple(t.shape), t.stride())
        n += 1
    assert n > 1000
    assert not _rules.is_channels_last(torch.empty(3, 4, 5))


def test_memory_format_any_operand():
    a = torch.empty(2, 3, 4, 5)
    b = a.contiguous(memory_format=torch.channels_last)
    assert _rules.memory_format(a, a) == torch.contiguous_format
    assert _rules.memory_format(a, b) == torch.channels_last
    assert _rules.memory_format(b) == torch.channels_last


@pytest.mark.parametrize(
    "value,want",
    [(3, (3, 3)), ((2, 5), (2, 5)), ([4], (4, 4)), (torch.Size([1, 2]), (1, 2)), (np.int64(7), (7, 7)),
     ((np.int32(2), 3), (2, 3))],
)
def test_pair_accepts(value, want):
    got = _rules.pair(value, "stride", "op")
    assert got == want and all(type(v) is int for v in got)


@pytest.mark.parametrize(
    "value,exc", [((1, 2, 3), ValueError), ((), ValueError), (2.0, TypeError), (True, TypeError), ("2", TypeError),
                  ((1, 2.5), TypeError), (None, TypeError)],
)
def test_pair_refuses(value, exc):
    with pytest.raises(exc, match="deepops.op: 'stride' must be an int or a pair of ints"):
        _rules.pair(value, "stride", "op")


def test_output_sizes_match_pytorch():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, k, s, d = int(rng.integers(1, 20)), int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = int(rng.integers(0, k // 2 + 1))
        x = torch.empty(1, 1, n, 1)
        if n + 2 * p >= d * (k - 1) + 1:
            want = F.conv2d(x, torch.empty(1, 1, k, 1), stride=(s, 1), padding=(p, 0), dilation=(d, 1)).shape[2]
            assert _rules.conv_out_size(n, k, s, p, d) == want
            for ceil in (False, True):
                want = F.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode=ceil).shape[2]
                assert _rules.pool_out_size(n, k, s, p, d, ceil) == want
        op = int(rng.integers(0, max(s, d)))
        want = F.conv_transpose2d(x, torch.empty(1, 1, k, 1), stride=(s, 1), padding=(p, 0), output_padding=(op, 0),
                                  dilation=(d, 1))
        assert _rules.conv_transpose_out_size(n, k, s, p, op, d) == want.shape[2]


def test_compute_dtype():
    assert _rules.compute_dtype(torch.float16) == _rules.compute_dtype(torch.bfloat16) == torch.float32
    assert _rules.compute_dtype(torch.float64) == torch.float64


@pytest.mark.skipif(EMULATED, reason="the ops' checks are the C++ binding's under the emulated CUDA back end")
def test_an_eager_call_checks_its_arguments_once(monkeypatch):
    from deepops.ops import conv, pool

    calls = []

    def counting(op, **pairs):
        calls.append(op)
        return _rules.check_geometry(op, **pairs)

    monkeypatch.setattr(conv, "check_geometry", counting)
    monkeypatch.setattr(pool, "check_geometry", counting)
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    deepops.conv2d(x, w, padding=1)
    assert calls == ["conv2d"]
    calls.clear()
    deepops.conv_transpose2d(x, w.transpose(0, 1).contiguous(), stride=2)
    assert calls == ["conv_transpose2d"]
    calls.clear()
    deepops.max_pool2d(x, 2)
    assert calls == ["max_pool2d"]
