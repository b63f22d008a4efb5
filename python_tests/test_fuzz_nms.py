"""Differential fuzzing of nms / batched_nms / box_iou: hypothesis picks the box population (sparse, clustered,
identical, degenerate, tied scores, nested, integer grid), its size (empty included), dtype, device, threshold
(0 and 1 included), class count and memory layout; the kept indices must equal the reference's exactly
(torchvision's own results where it is installed), box_iou its values and its gradients those of the same
expression differentiated by autograd."""

from __future__ import annotations

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import deepops  # noqa: E402
from conftest import TOL, layout  # noqa: E402
from fuzz_common import devices  # noqa: E402
from test_nms import make_boxes, ref_box_iou, ref_nms  # noqa: E402

try:
    import torchvision  # noqa: F401

    HAS_TV = True
except ImportError:
    HAS_TV = False

kinds = st.sampled_from(["sparse", "clustered", "identical", "degenerate", "ties", "nested", "grid"])
dtypes = st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])
thresholds = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(-0.5, 1.5, allow_nan=False))
box_layouts = st.sampled_from(["contiguous", "strided", "last_two_swapped"])  # the last: boxes stored column-major


def _boxes(n, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == "grid":  # small integer boxes on a coarse grid: exact ties in IoU and in score
        xy = torch.randint(0, 6, (n, 2), generator=gen).double() * 4
        wh = torch.randint(1, 4, (n, 2), generator=gen).double() * 4
        return torch.cat([xy, xy + wh], 1), torch.randint(0, 4, (n,), generator=gen).double()
    return make_boxes(n, kind, gen, extent=300.0)


@given(n=st.integers(0, 160), kind=kinds, dtype=dtypes, device=devices, thr=thresholds, kind_layout=box_layouts,
       seed=st.integers(0, 2**31 - 1))
def test_fuzz_nms(n, kind, dtype, device, thr, kind_layout, seed):
    b, s = _boxes(n, kind, seed)
    b = layout(b.to(device=device, dtype=dtype), kind_layout)
    s = s.to(device=device, dtype=dtype)
    keep = deepops.nms(b, s, thr)
    assert keep.dtype == torch.int64 and keep.device == b.device
    torch.testing.assert_close(keep.cpu(), ref_nms(b, s, thr), rtol=0, atol=0)
    if HAS_TV and dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(keep.cpu(), torchvision.ops.nms(b.cpu(), s.cpu(), thr), rtol=0, atol=0)


@given(n=st.integers(0, 160), ncls=st.integers(1, 12), kind=kinds, dtype=dtypes, device=devices, thr=thresholds,
       idx_dtype=st.sampled_from([torch.int64, torch.int32, torch.int16, torch.uint8]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_batched_nms(n, ncls, kind, dtype, device, thr, idx_dtype, seed):
    b, s = _boxes(n, kind, seed)
    idxs = torch.randint(0, ncls, (n,), generator=torch.Generator().manual_seed(seed + 1))
    b, s = b.to(device=device, dtype=dtype), s.to(device=device, dtype=dtype)
    keep = deepops.batched_nms(b, s, idxs.to(device=device, dtype=idx_dtype), thr)
    torch.testing.assert_close(keep.cpu(), ref_nms(b, s, thr, idxs), rtol=0, atol=0)


@given(n=st.integers(0, 30), m=st.integers(0, 30), kind=kinds, dtype=dtypes, device=devices,
       seed=st.integers(0, 2**31 - 1))
def test_fuzz_box_iou(n, m, kind, dtype, device, seed):
    b1 = _boxes(n, kind, seed)[0].to(device=device, dtype=dtype)
    b2 = _boxes(m, kind, seed + 1)[0].to(device=device, dtype=dtype)
    ours = deepops.box_iou(b1, b2)
    torch.testing.assert_close(ours, ref_box_iou(b1, b2), equal_nan=True, **TOL[dtype])
    if dtype == torch.float64 and n and m and kind not in ("identical", "degenerate", "grid", "ties"):
        # gradients: the same expression differentiated by autograd (away from ties of max/min, where the
        # subgradient conventions of the two may legitimately differ, so only generic boxes)
        a1, a2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
        r1, r2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
        g = torch.rand(n, m, dtype=dtype, device=device, generator=None)
        torch.autograd.backward(deepops.box_iou(a1, a2), g)
        torch.autograd.backward(ref_box_iou(r1, r2), g)
        torch.testing.assert_close(a1.grad, r1.grad, equal_nan=True, **TOL[dtype])
        torch.testing.assert_close(a2.grad, r2.grad, equal_nan=True, **TOL[dtype])
