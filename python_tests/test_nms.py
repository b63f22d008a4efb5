"""NMS, batched NMS and box IoU against a straightforward reference written with torchvision's arithmetic (and
against torchvision itself where it is installed): random boxes of many kinds, degenerate and non-finite boxes,
tied scores, every dtype, thresholds from negative to NaN; gradients of box_iou; opcheck; torch.compile; errors."""

from __future__ import annotations

import math

import pytest
import torch

import deepops
from conftest import ALL_FLOATS, DEVICES, stable_seed

HALF = (torch.float16, torch.bfloat16)
THRESHOLDS = [0.0, 0.3, 0.5, 0.7, 1.0]

# ---------------------------------------------------------------------------------------------------- references


def ref_nms(boxes, scores, thr, idxs=None):
    """torchvision's CPU loop, vectorised over the later boxes; same float arithmetic (float32 for 16-bit types).

    ``std::max(a, b)`` is ``a < b ? b : a`` and ``std::min(a, b)`` is ``b < a ? b : a`` (the NaN cases differ from
    torch.maximum); the IoU is compared with the threshold in float64."""
    boxes, scores = boxes.cpu(), scores.cpu()
    b = boxes.float() if boxes.dtype in HALF else boxes
    n = b.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    order = torch.sort(scores, stable=True, descending=True).indices
    x1, y1, x2, y2 = b.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    for a in range(n):
        i = order[a]
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[a + 1 :]
        xx1 = torch.where(x1[i] < x1[rest], x1[rest], x1[i])
        yy1 = torch.where(y1[i] < y1[rest], y1[rest], y1[i])
        xx2 = torch.where(x2[rest] < x2[i], x2[rest], x2[i])
        yy2 = torch.where(y2[rest] < y2[i], y2[rest], y2[i])
        dw, dh = xx2 - xx1, yy2 - yy1
        w = torch.where(0 < dw, dw, 0)
        h = torch.where(0 < dh, dh, 0)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        sup = ovr.double() > thr
        if idxs is not None:
            sup &= idxs.cpu()[rest] == idxs.cpu()[i]
        suppressed[rest[sup]] = True
    return torch.tensor(keep, dtype=torch.int64)


def ref_box_iou(b1, b2):
    """torchvision.ops.box_iou's expression (upcast to float32 for 16-bit types after the subtraction)."""
    up = lambda t: t.float() if t.dtype in HALF else t  # noqa: E731
    area1 = (up(b1)[:, 2] - up(b1)[:, 0]) * (up(b1)[:, 3] - up(b1)[:, 1])
    area2 = (up(b2)[:, 2] - up(b2)[:, 0]) * (up(b2)[:, 3] - up(b2)[:, 1])
    lt = torch.max(b1[:, None, :2], b2[:, :2])
    rb = torch.min(b1[:, None, 2:], b2[:, 2:])
    wh = up(rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


# ----------------------------------------------------------------------------------------------------- inputs


def make_boxes(n, kind, gen, extent=1000.0):
    """Detector-like boxes (random centres and sizes) in float64, plus scores."""
    c = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (extent if kind != "clustered" else 60.0)
    wh = torch.exp(torch.rand(n, 2, generator=gen, dtype=torch.float64) * 3) * 4  # 4 .. 80, log-uniform
    b = torch.cat([c - wh / 2, c + wh / 2], 1)
    s = torch.rand(n, generator=gen, dtype=torch.float64)
    if kind == "identical" and n:
        b[:] = b[0]
    if kind == "ties":
        s = torch.randint(0, 3, (n,), generator=gen).double()
    if kind == "degenerate" and n:
        m = torch.rand(n, generator=gen) < 0.3
        b[m, 2] = b[m, 0] - torch.rand(int(m.sum()), generator=gen, dtype=torch.float64) * 5  # x2 < x1
        m = torch.rand(n, generator=gen) < 0.2
        b[m, 3] = b[m, 1]  # zero height
        b[: n // 10] = b[n // 10 : 2 * (n // 10)]  # some duplicates too
    if kind == "nested" and n:  # boxes inside boxes: IoU from the area ratio alone
        scale = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 0.9 + 0.1
        b = torch.cat([c - wh * scale, c + wh * scale], 1)
    return b, s


def _same(ours, ref):
    assert ours.dtype == torch.int64
    torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------------------- nms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
@pytest.mark.parametrize("kind", ["sparse", "clustered", "identical", "degenerate", "ties", "nested"])
def test_nms_matches_reference(device, dtype, kind):
    gen = torch.Generator().manual_seed(stable_seed(kind))
    for n in (0, 1, 2, 7, 40, 300, 1000):
        b, s = make_boxes(n, kind, gen)
        b, s = b.to(device=device, dtype=dtype), s.to(device=device, dtype=dtype)
        for thr in THRESHOLDS:
            keep = deepops.nms(b, s, thr)
            assert keep.device == b.device
            _same(keep, ref_nms(b, s, thr))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
def test_batched_nms_matches_reference(device, dtype):
    gen = torch.Generator().manual_seed(1)
    for n, ncls in ((0, 1), (1, 1), (50, 3), (700, 80), (1500, 7)):
        b, s = make_boxes(n, "clustered", gen)
        idxs = torch.randint(-5, ncls - 5, (n,), generator=gen)  # negative class ids are fine too
        b, s, idxs = b.to(device=device, dtype=dtype), s.to(device=device, dtype=dtype), idxs.to(device)
        for thr in (0.0, 0.5, 0.9):
            _same(deepops.batched_nms(b, s, idxs, thr), ref_nms(b, s, thr, idxs))
        # any integer dtype of the class ids
        _same(deepops.batched_nms(b, s, idxs.to(torch.int32), 0.5), ref_nms(b, s, 0.5, idxs))
        # one class is plain NMS
        _same(deepops.batched_nms(b, s, torch.zeros_like(idxs), 0.5), deepops.nms(b, s, 0.5).cpu())


@pytest.mark.parametrize("device", DEVICES)
def test_ties_keep_input_order(device):
    # disjoint boxes, all scores equal: nothing is suppressed and the stable order is the input order
    x = torch.arange(2000, dtype=torch.float32, device=device) * 10
    b = torch.stack([x, x, x + 1, x + 1], 1)
    s = torch.ones(2000, device=device)
    _same(deepops.nms(b, s, 0.5), torch.arange(2000))
    # identical boxes with tied scores: the first of the tie survives
    b2 = torch.tensor([[0, 0, 1, 1.0]] * 5, device=device)
    s2 = torch.tensor([0.5, 0.9, 0.9, 0.1, 0.9], device=device)
    _same(deepops.nms(b2, s2, 0.5), torch.tensor([1]))
    # -0.0 and 0.0 are one score (a tie)
    s3 = torch.tensor([0.0, -0.0, 0.0], device=device)
    _same(deepops.nms(b[:3], s3, 0.5), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_non_finite_values_and_odd_thresholds(device, dtype):
    """NaN / inf coordinates and scores are computed with, as torchvision does; negative and NaN thresholds."""
    gen = torch.Generator().manual_seed(7)
    b, s = make_boxes(400, "clustered", gen)
    specials = torch.tensor([math.nan, math.inf, -math.inf, 0.0, 1e30, -1e30], dtype=torch.float64)
    m = torch.rand(400, 4, generator=gen) < 0.05
    b[m] = specials[torch.randint(0, 6, (int(m.sum()),), generator=gen)]
    sm = torch.rand(400, generator=gen) < 0.05
    s[sm] = specials[torch.randint(0, 6, (int(sm.sum()),), generator=gen)]
    b, s = b.to(device=device, dtype=dtype), s.to(device=device, dtype=dtype)
    idxs = torch.randint(0, 3, (400,), generator=gen).to(device)
    for thr in (-0.5, -1e-9, 0.0, 1e-7, 0.5, 1.0, 2.0, math.nan, math.inf):
        _same(deepops.nms(b, s, thr), ref_nms(b, s, thr))
        _same(deepops.batched_nms(b, s, idxs, thr), ref_nms(b, s, thr, idxs))
    # a NaN threshold suppresses nothing: every index comes back in score order
    assert deepops.nms(b, s, math.nan).numel() == 400


def test_grid_path_at_scale():
    """The grid sweep (and its parallel preparation, >= 50k boxes) against the plain torchvision loop."""
    import numpy as np

    from deepops.cpu import nms as K

    gen = torch.Generator().manual_seed(3)
    n, nobj = 60_000, 400
    # detector-like proposals: jittered copies of a few hundred objects, plus a few huge boxes (the list that
    # every query scans)
    obj_c = torch.rand(nobj, 2, generator=gen) * 2000
    obj_wh = torch.exp(torch.rand(nobj, 2, generator=gen) * 4) * 4
    k = torch.randint(0, nobj, (n,), generator=gen)
    c = obj_c[k] + torch.randn(n, 2, generator=gen) * obj_wh[k] * 0.1
    wh = obj_wh[k] * torch.exp(torch.randn(n, 2, generator=gen) * 0.1)
    wh[:50] *= 60
    b = torch.cat([c - wh / 2, c + wh / 2], 1)
    s = torch.rand(n, generator=gen)
    idxs = torch.randint(0, 5, (n,), generator=gen)
    order = torch.sort(s, stable=True, descending=True).indices.numpy()
    x1, y1, x2, y2 = b.t().contiguous().numpy()
    keep = np.empty(n, np.int64)
    cnt = K.nms_exact(x1, y1, x2, y2, idxs.numpy(), order, 0.5, np.float32(0), keep)
    _same(deepops.batched_nms(b, s, idxs, 0.5), torch.from_numpy(keep[:cnt].copy()))


def test_agrees_with_torchvision_if_installed():
    tv = pytest.importorskip("torchvision")
    gen = torch.Generator().manual_seed(11)
    for kind in ("sparse", "clustered", "degenerate", "ties"):
        b, s = make_boxes(800, kind, gen)
        for dtype in (torch.float32, torch.float64):
            bb, ss = b.to(dtype), s.to(dtype)
            for thr in (0.0, 0.5, 1.0):
                _same(deepops.nms(bb, ss, thr), tv.ops.nms(bb, ss, thr))
            torch.testing.assert_close(
                deepops.box_iou(bb, bb[:100]), tv.ops.box_iou(bb, bb[:100]), rtol=0, atol=0, equal_nan=True
            )
        for dtype in HALF:  # torchvision computes these in float32 (autocast); so does deepops
            _same(deepops.nms(b.to(dtype), s.to(dtype), 0.5), tv.ops.nms(b.to(dtype).float(), s.to(dtype).float(), 0.5))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    for dtype in ALL_FLOATS:
        e = torch.empty(0, 4, dtype=dtype, device=device)
        es = torch.empty(0, dtype=dtype, device=device)
        for keep in (deepops.nms(e, es, 0.5), deepops.batched_nms(e, es, torch.empty(0, dtype=torch.int64, device=device), 0.5)):
            assert keep.shape == (0,) and keep.dtype == torch.int64 and keep.device == e.device
        iou = deepops.box_iou(e, torch.ones(3, 4, dtype=dtype, device=device))
        assert iou.shape == (0, 3) and iou.dtype == (torch.float32 if dtype in HALF else dtype)


# ------------------------------------------------------------------------------------------------------- box_iou


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ALL_FLOATS)
def test_box_iou_matches_reference(device, dtype):
    gen = torch.Generator().manual_seed(5)
    for kind in ("sparse", "clustered", "degenerate", "nested"):
        b, _ = make_boxes(300, kind, gen, extent=100.0)
        b = b.to(dtype)
        if kind == "degenerate":
            b[::17, 0] = math.nan
            b[::23, 2] = math.inf
        a, c = b.to(device), b[::3].flip(0).contiguous().to(device)
        ours = deepops.box_iou(a, c)
        ref = ref_box_iou(b, b[::3].flip(0))
        assert ours.dtype == ref.dtype and ours.shape == (300, 100)
        torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=0, equal_nan=True)
    # non-contiguous inputs
    t = b.t().contiguous().t().to(device)
    torch.testing.assert_close(deepops.box_iou(t, t).cpu(), ref_box_iou(b, b), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_box_iou_gradients(device):
    gen = torch.Generator().manual_seed(2)
    b, _ = make_boxes(12, "clustered", gen, extent=40.0)
    # distinct random boxes (finite differences are only valid away from ties in max/min)
    g1 = b[:7].to(device).requires_grad_()
    g2 = b[7:].to(device).requires_grad_()
    assert torch.autograd.gradcheck(deepops.box_iou, (g1, g2))
    assert torch.autograd.gradgradcheck(deepops.box_iou, (g1, g2))
    b1 = b[:7].to(device)
    b2 = b[4:].to(device)  # shares some boxes with b1: ties in max/min
    # the same gradients as autograd through torchvision's expression, ties included
    for dtype in (torch.float32, torch.float64):
        a1 = b1.detach().to(dtype).requires_grad_()
        a2 = b2.detach().to(dtype).requires_grad_()
        r1 = b1.detach().to(dtype).requires_grad_()
        r2 = b2.detach().to(dtype).requires_grad_()
        g = torch.randn(7, 8, dtype=dtype, device=device)
        (deepops.box_iou(a1, a2) * g).sum().backward()
        (ref_box_iou(r1, r2) * g).sum().backward()
        torch.testing.assert_close(a1.grad, r1.grad)
        torch.testing.assert_close(a2.grad, r2.grad)
    # 16-bit boxes get 16-bit gradients
    h = b[:5].half().to(device).requires_grad_()
    deepops.box_iou(h, h).sum().backward()
    assert h.grad.dtype == torch.float16


# ------------------------------------------------------------------------------------------- opcheck and compile


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    gen = torch.Generator().manual_seed(4)
    b, s = make_boxes(150, "clustered", gen)
    b, s = b.float().to(device), s.float().to(device)
    idxs = torch.randint(0, 4, (150,), generator=gen).to(device)
    ops = torch.ops.deepops
    for rg in (False, True):
        torch.library.opcheck(ops.nms.default, (b.clone().requires_grad_(rg), s.clone().requires_grad_(rg), 0.5))
        torch.library.opcheck(
            ops.batched_nms.default, (b.clone().requires_grad_(rg), s.clone().requires_grad_(rg), idxs, 0.5)
        )
        torch.library.opcheck(ops.box_iou.default, (b[:20].double().requires_grad_(rg), b[10:50].double()))
    torch.library.opcheck(ops.nms.default, (b[:0], s[:0], 0.5))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    """The output size is data-dependent: the fake kernels give an unbacked size, so no graph break is needed."""

    def detect(boxes, scores, labels):
        keep = deepops.batched_nms(boxes, scores, labels, 0.5)
        kept = boxes[keep]
        iou = deepops.box_iou(kept, boxes)
        return kept, iou.max(dim=0).values, deepops.nms(boxes, scores, 0.3)

    gen = torch.Generator().manual_seed(9)
    compiled = torch.compile(detect, fullgraph=True, dynamic=True)
    for n in (300, 500):
        b, s = make_boxes(n, "clustered", gen)
        b, s = b.float().to(device), s.float().to(device)
        labels = torch.randint(0, 3, (n,), generator=gen).to(device)
        for x, y in zip(compiled(b, s, labels), detect(b, s, labels)):
            torch.testing.assert_close(x, y)


# -------------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs():
    b = torch.rand(5, 4)
    s = torch.rand(5)
    i = torch.zeros(5, dtype=torch.int64)
    with pytest.raises(ValueError, match="'boxes' must have shape"):
        deepops.nms(torch.rand(5, 3), s, 0.5)
    with pytest.raises(ValueError, match="'boxes' must have shape"):
        deepops.nms(torch.rand(5), s, 0.5)
    with pytest.raises(ValueError, match="'scores' must be 1-D"):
        deepops.nms(b, s[:, None], 0.5)
    with pytest.raises(ValueError, match="5 boxes but 'scores' has 4"):
        deepops.nms(b, s[:4], 0.5)
    with pytest.raises(ValueError, match="5 boxes but 'idxs' has 3"):
        deepops.batched_nms(b, s, i[:3], 0.5)
    with pytest.raises(ValueError, match="'idxs' must be 1-D"):
        deepops.batched_nms(b, s, i[:, None], 0.5)
    with pytest.raises(TypeError, match="'idxs' .* integer dtype"):
        deepops.batched_nms(b, s, i.float(), 0.5)
    with pytest.raises(TypeError, match="'idxs' .* integer dtype"):
        deepops.batched_nms(b, s, i.bool(), 0.5)
    with pytest.raises(TypeError, match="'boxes' has dtype torch.int64"):
        deepops.nms(torch.ones(5, 4, dtype=torch.int64), s, 0.5)
    with pytest.raises(TypeError, match="'scores' has dtype torch.float64"):
        deepops.nms(b, s.double(), 0.5)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        deepops.nms([[0, 0, 1, 1]], s, 0.5)
    with pytest.raises(TypeError, match="'boxes2' has dtype"):
        deepops.box_iou(b, b.double())
    with pytest.raises(ValueError, match="'boxes1' must have shape"):
        deepops.box_iou(torch.rand(3, 5), b)
    # the ops themselves (no Python wrapper) check too
    with pytest.raises(ValueError, match="'scores' has 4"):
        torch.ops.deepops.nms(b, s[:4], 0.5)
    with pytest.raises(TypeError, match="integer dtype"):
        torch.ops.deepops.batched_nms(b, s, s, 0.5)


def test_every_nms_op_is_registered():
    for n in ("deepops::nms", "deepops::batched_nms", "deepops::box_iou"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU"), n
        assert torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA"), n
