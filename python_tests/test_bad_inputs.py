"""The bad-input matrix: every op, many ways of calling it wrongly.  Each case must raise the named exception type
with a message that names the offending argument — never crash, hang or return a result."""

from __future__ import annotations

import re

import pytest
import torch

import deepops

F32 = dict(dtype=torch.float32)
BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
SCORES = torch.tensor([0.9, 0.8])
IDXS = torch.tensor([0, 1])
X4 = torch.randn(2, 3, 8, 8)
W = torch.randn(4, 3, 3, 3)

# (id, callable, exception type, regex the message must match)
CASES: list[tuple[str, object, type, str]] = [
    # ---- relu / leaky_relu
    ("relu int tensor", lambda: deepops.relu(torch.arange(4)), TypeError, "input.*dtype"),
    ("relu bool tensor", lambda: deepops.relu(torch.ones(2, dtype=torch.bool)), TypeError, "dtype"),
    ("relu complex", lambda: deepops.relu(torch.ones(2, dtype=torch.complex64)), TypeError, "dtype"),
    ("relu list", lambda: deepops.relu([1.0]), TypeError, "torch.Tensor"),
    ("relu None", lambda: deepops.relu(None), TypeError, "torch.Tensor"),
    ("leaky int tensor", lambda: deepops.leaky_relu(torch.arange(3), 0.1), TypeError, "dtype"),
    ("leaky slope not a number", lambda: deepops.leaky_relu(torch.ones(3), "a"), (TypeError, ValueError), "float|could not"),
    ("relu_backward shape", lambda: torch.ops.deepops.relu_backward(torch.ones(3), torch.ones(4)), ValueError, "shape"),
    ("relu_backward dtype", lambda: torch.ops.deepops.relu_backward(torch.ones(3), torch.ones(3, dtype=torch.float64)), TypeError, "dtype"),
    ("leaky_backward shape", lambda: torch.ops.deepops.leaky_relu_backward(torch.ones(2, 2), torch.ones(4), 0.1), ValueError, "shape"),
    # ---- nms / batched_nms / box_iou
    ("nms boxes 1-D", lambda: deepops.nms(torch.ones(4), torch.ones(1), 0.5), ValueError, "boxes"),
    ("nms boxes 3 columns", lambda: deepops.nms(torch.ones(2, 3), torch.ones(2), 0.5), ValueError, "boxes"),
    ("nms length mismatch", lambda: deepops.nms(BOXES, torch.ones(3), 0.5), ValueError, "scores"),
    ("nms scores 2-D", lambda: deepops.nms(BOXES, torch.ones(2, 1), 0.5), ValueError, "scores"),
    ("nms integer boxes", lambda: deepops.nms(BOXES.long(), SCORES, 0.5), TypeError, "boxes"),
    ("nms scores dtype differs", lambda: deepops.nms(BOXES, SCORES.double(), 0.5), TypeError, "scores"),
    ("batched idxs float", lambda: deepops.batched_nms(BOXES, SCORES, IDXS.float(), 0.5), TypeError, "idxs"),
    ("batched idxs length", lambda: deepops.batched_nms(BOXES, SCORES, torch.tensor([0, 1, 2]), 0.5), ValueError, "idxs"),
    ("batched idxs 2-D", lambda: deepops.batched_nms(BOXES, SCORES, IDXS[:, None], 0.5), ValueError, "idxs"),
    ("box_iou 1-D", lambda: deepops.box_iou(torch.ones(4), BOXES), ValueError, "boxes1"),
    ("box_iou 5 columns", lambda: deepops.box_iou(BOXES, torch.ones(2, 5)), ValueError, "boxes2"),
    ("box_iou int", lambda: deepops.box_iou(BOXES.int(), BOXES.int()), TypeError, "boxes1"),
    ("box_iou dtype mismatch", lambda: deepops.box_iou(BOXES, BOXES.double()), TypeError, "dtype"),
]


def _add(cases):
    CASES.extend(cases)


conv2d, conv_t = deepops.conv2d, deepops.conv_transpose2d
_add([
    ("conv input 2-D", lambda: conv2d(torch.ones(3, 3), W), ValueError, "input"),
    ("conv input 5-D", lambda: conv2d(torch.ones(1, 1, 3, 8, 8), W), ValueError, "input"),
    ("conv weight 3-D", lambda: conv2d(X4, torch.ones(4, 3, 3)), ValueError, "weight"),
    ("conv channel mismatch", lambda: conv2d(X4, torch.randn(4, 2, 3, 3)), ValueError, "channel"),
    ("conv groups not dividing", lambda: conv2d(X4, torch.randn(4, 1, 3, 3), groups=2), ValueError, "groups"),
    ("conv groups zero", lambda: conv2d(X4, W, groups=0), ValueError, "groups"),
    ("conv out channels not divisible", lambda: conv2d(torch.randn(1, 4, 8, 8), torch.randn(3, 2, 3, 3), groups=2), ValueError, "groups|channel"),
    ("conv kernel larger than input", lambda: conv2d(torch.randn(1, 3, 2, 2), W), ValueError, "kernel|size"),
    ("conv zero stride", lambda: conv2d(X4, W, stride=0), ValueError, "stride"),
    ("conv negative stride", lambda: conv2d(X4, W, stride=-1), ValueError, "stride"),
    ("conv negative padding", lambda: conv2d(X4, W, padding=-1), ValueError, "padding"),
    ("conv zero dilation", lambda: conv2d(X4, W, dilation=0), ValueError, "dilation"),
    ("conv bad padding string", lambda: conv2d(X4, W, padding="full"), ValueError, "padding"),
    ("conv same with stride", lambda: conv2d(X4, W, padding="same", stride=2), ValueError, "same|stride"),
    ("conv stride of 3 values", lambda: conv2d(X4, W, stride=(1, 1, 1)), ValueError, "stride"),
    ("conv int input", lambda: conv2d(X4.long(), W.long()), TypeError, "dtype"),
    ("conv dtype mismatch", lambda: conv2d(X4, W.double()), TypeError, "dtype|weight"),
    ("conv bias dtype", lambda: conv2d(X4, W, torch.ones(4, dtype=torch.float64)), TypeError, "bias"),
    ("conv bias length", lambda: conv2d(X4, W, torch.ones(5)), ValueError, "bias"),
    ("conv bias 2-D", lambda: conv2d(X4, W, torch.ones(4, 1)), ValueError, "bias"),
    ("conv_t channel mismatch", lambda: conv_t(X4, torch.randn(2, 4, 3, 3)), ValueError, "channel"),
    ("conv_t output_padding too big", lambda: conv_t(X4, torch.randn(3, 4, 3, 3), stride=2, output_padding=2), ValueError, "output_padding"),
    ("conv_t zero stride", lambda: conv_t(X4, torch.randn(3, 4, 3, 3), stride=0), ValueError, "stride"),
])

if hasattr(deepops, "max_pool2d"):
    mp = deepops.max_pool2d
    _add([
        ("pool input 2-D", lambda: mp(torch.ones(4, 4), 2), ValueError, "input"),
        ("pool input 5-D", lambda: mp(torch.ones(1, 1, 1, 4, 4), 2), ValueError, "input"),
        ("pool zero kernel", lambda: mp(X4, 0), ValueError, "kernel"),
        ("pool negative kernel", lambda: mp(X4, -2), ValueError, "kernel"),
        ("pool zero stride", lambda: mp(X4, 2, stride=0), ValueError, "stride"),
        ("pool padding over half kernel", lambda: mp(X4, 2, padding=2), ValueError, "padding"),
        ("pool negative padding", lambda: mp(X4, 3, padding=-1), ValueError, "padding"),
        ("pool zero dilation", lambda: mp(X4, 2, dilation=0), ValueError, "dilation"),
        ("pool output too small", lambda: mp(torch.ones(1, 1, 2, 2), 5), ValueError, "output|size|kernel"),
        ("pool int input", lambda: mp(X4.long(), 2), TypeError, "dtype"),
        ("pool kernel of 3 values", lambda: mp(X4, (2, 2, 2)), ValueError, "kernel"),
    ])


@pytest.mark.parametrize("name,fn,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_clear_error(name, fn, exc, pattern):
    with pytest.raises(exc) as info:
        fn()
    assert re.search(pattern, str(info.value), re.IGNORECASE), f"{name}: unhelpful message {info.value!r}"


def test_matrix_is_large_enough():
    assert len(CASES) >= 23  # relu + nms alone; conv and pool add more once present


def test_nan_and_inf_boxes_are_computed_not_crashing():
    # documented behaviour (as torchvision): NaN/inf coordinates take part in the arithmetic; a NaN IoU never
    # suppresses, so the box is kept
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [float("nan"), 0.0, 10.0, 10.0], [0.0, 0.0, float("inf"), 10.0]])
    keep = deepops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.dtype == torch.int64 and keep.tolist()[0] == 0 and 1 in keep.tolist()


@pytest.mark.cuda
def test_64bit_indexing_on_gpu():
    # more than 2**31 elements (4 GiB of float16): indices must not wrap around 32 bits
    from conftest import HAS_CUDA

    if not HAS_CUDA:
        pytest.skip("needs a GPU")
    n = 2**31 + 4099
    x = torch.full((n,), -1.0, dtype=torch.float16, device="cuda")
    x[-5:] = 3.0
    y = deepops.relu(x)
    assert y[-5:].eq(3.0).all() and y[:-5].eq(0).all()
    del x, y
    torch.cuda.empty_cache()
