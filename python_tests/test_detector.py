"""The cell detector: generator ground truth, metrics on hand-made cases, decoding, the model running on
deepops' ops, a short training run that learns, tiling against whole-image inference, and the CLI on TIFF / PNG.

The unmarked tests are the CI subset (tens of seconds on 2 cores); the goal reproduction is in
benchmarks/detector_goals.py and a shortened training goal is marked slow.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import deepops.nn as dnn
from deepops.data import simcep
from deepops.detection import metrics
from deepops.detection.data import SyntheticBatches, detector_loss, encode_targets, make_batch, normalize
from deepops.detection.decode import decode
from deepops.detection.tiling import detect
from deepops.models.detector import CellDetector

# --------------------------------------------------------------------------------------------- the generator


def _clean(name: str, **kw) -> simcep.SimcepParams:
    """A preset with the measurement made exact: no noise, no vignetting, no autofluorescence."""
    return simcep.preset(name, ccd_var=0.0, photons=None, illumination=0.0, autofluorescence=0.0, background=0.05, **kw)


@pytest.mark.parametrize("name", ["easy", "crowded"])
def test_ground_truth_matches_image(name):
    for seed in range(4):
        s = simcep.generate(_clean(name), seed)
        H, W = s.image.shape
        assert s.count == len(s.centers) == len(s.areas) > 0
        bg = round(0.05 * 255)
        img = s.image.astype(np.int32)
        covered = np.zeros((H, W), bool)
        for i, (x1, y1, x2, y2) in enumerate(s.boxes.astype(int)):
            assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
            inside = s.labels[y1:y2, x1:x2] == i + 1
            assert inside.any(), "a box without its nucleus"
            assert not (s.labels == i + 1)[~_box_mask((H, W), (x1, y1, x2, y2))].any(), "nucleus outside its box"
            # the nucleus is bright inside its box: its brightest pixel well above the background
            assert img[y1:y2, x1:x2][inside].max() > bg + 40
            cy, cx = s.centers[i]
            assert y1 <= cy <= y2 and x1 <= cx <= x2
            pad = 12  # blur reach (3 sigma, sigma <= 2 px for these presets) with room to spare
            covered[max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad] = True
        # no nucleus without a box: far from every box, the image is exactly the background
        assert np.all(np.abs(img[~covered] - bg) <= 1)
        assert set(np.unique(s.labels)) - {0} <= set(range(1, s.count + 1))


def _box_mask(shape, box):
    m = np.zeros(shape, bool)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = True
    return m


def test_generator_seeded_bit_depths_and_presets():
    a, b = simcep.generate("noisy", 7), simcep.generate("noisy", 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    c = simcep.generate("noisy", 8)
    assert not np.array_equal(a.image, c.image)
    s16 = simcep.generate(simcep.preset("easy", bit_depth=16), 3)
    assert s16.image.dtype == np.uint16 and s16.image.max() > 255
    assert simcep.generate("easy", 3).image.dtype == np.uint8
    crowded = [simcep.generate("crowded", i).count for i in range(3)]
    easy = [simcep.generate("easy", i).count for i in range(3)]
    assert min(crowded) > max(easy) - 5 and np.mean(crowded) > 2 * np.mean(easy)
    with pytest.raises(ValueError, match="preset"):
        simcep.preset("nope")
    with pytest.raises(ValueError, match="bit_depth"):
        simcep.SimcepParams(bit_depth=12)
    small = simcep.resized(simcep.PRESETS["crowded"], (112, 112))
    assert small.size == (112, 112) and small.n_cells[1] == round(simcep.PRESETS["crowded"].n_cells[1] / 4)


def test_overlap_is_limited():
    p = dataclasses.replace(_clean("crowded"), overlap=0.1)
    for seed in range(3):
        s = simcep.generate(p, seed)
        # every nucleus keeps at least 90% of its own area visible in the label image (later ones win overlaps)
        vis = np.bincount(s.labels.ravel(), minlength=s.count + 1)[1:]
        assert np.all(vis >= 0.9 * s.areas - 1)


# --------------------------------------------------------------------------------------------- metrics


def test_metrics_hand_made():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    perfect = metrics.evaluate([(gt[0], np.array([0.9, 0.8]))], gt)
    assert perfect["precision"] == perfect["recall"] == perfect["f1"] == perfect["ap50"] == 1.0
    assert perfect["count_error"] == perfect["count_mae"] == 0.0 and perfect["jo_fp_per_object"] == 0.0
    # a duplicate of the first box: one FP, count off by one
    dup = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)
    r = metrics.evaluate([(dup, np.array([0.9, 0.8, 0.7]))], gt)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == 1.0 and r["f1"] == pytest.approx(0.8)
    # ranked TP, FP, TP against 2 objects: AP = 0.5 * 1 + 0.5 * 2/3
    assert r["ap50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert r["count_mae"] == 1.0 and r["count_error"] == 0.5 and r["jo_fp_per_object"] == 0.5
    # IoU exactly 0.5 matches at 0.5; IoU 0.45 does not; J&O needs IoU > 0.6
    half = np.array([[0, 0, 10, 5]], float)  # IoU 0.5 with [0, 0, 10, 10]
    assert metrics.match(half, [1.0], gt[0][:1], 0.5).tolist() == [True]
    assert metrics.match(np.array([[0, 0, 10, 4.5]]), [1.0], gt[0][:1], 0.5).tolist() == [False]
    r = metrics.evaluate([(half, np.array([1.0]))], [gt[0][:1]])
    assert r["f1"] == 1.0 and r["jo_recall"] == 0.0
    # a miss and an empty image; low-confidence detections do not count for J&O
    r = metrics.evaluate([(gt[0][:1], np.array([0.3])), (np.zeros((0, 4)), np.zeros(0))], [gt[0], np.zeros((0, 4))])
    assert (r["tp"], r["fn"], r["fp"]) == (1, 1, 0) and r["recall"] == 0.5 and r["ap50"] == pytest.approx(0.5)
    assert r["count_mae"] == 0.5 and r["count_error"] == 0.5 and r["count_error_per_image"] == 0.5
    assert r["jo_recall"] == 0.0
    # one detection cannot match two objects; the higher score takes the better box
    two = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    assert metrics.match(two, [0.2, 0.9], gt[0][:1]).tolist() == [False, True]
    assert metrics.iou_matrix(gt[0], gt[0]).tolist() == [[1.0, 0.0], [0.0, 1.0]]


# --------------------------------------------------------------------------------------------- targets, decoding


def test_targets_decode_round_trip():
    boxes = np.array([[10, 12, 30, 28], [40, 40, 61, 63]], np.float32)
    heat, reg, mask = encode_targets(boxes, (20, 20))
    assert mask.sum() == 2 and heat.max() == 1.0 and (heat == 1).sum() == 2
    # an ideal network output: heat logits high at the centres, the regression targets everywhere they matter
    out = torch.zeros(1, 5, 20, 20)
    out[0, 0] = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))
    out[0, 1:] = torch.from_numpy(reg)
    (bx, sc), = decode(out, threshold=0.5, mode="peaks+nms")
    assert len(bx) == 2
    got = bx[torch.argsort(bx[:, 0])].numpy()
    np.testing.assert_allclose(got, boxes, atol=1e-4)
    # a smooth network: the cells around a centre predict (nearly) the same box, with their own offsets
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 8, (y1 + y2) / 8
        for i in range(int(cy) - 2, int(cy) + 3):
            for j in range(int(cx) - 2, int(cx) + 3):
                out[0, 1:, i, j] = torch.tensor([cx - j, cy - i, np.log((x2 - x1) / 4), np.log((y2 - y1) / 4)])
    # without peak finding every cell above the threshold is a box: over-detection that NMS must remove
    (raw, _), = decode(out, threshold=0.3, mode="raw")
    (nms, _), = decode(out, threshold=0.3, mode="nms")
    (peaks, _), = decode(out, threshold=0.3, mode="peaks")
    assert len(raw) > 2 * len(nms) and len(nms) == 2 and len(peaks) == 2
    with pytest.raises(ValueError, match="mode"):
        decode(out, mode="bogus")


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = f"{func.namespace}.{func._schema.name.split('::')[-1]}"
        self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_model_runs_on_deepops_ops():
    model = CellDetector(width=4)
    x = torch.randn(2, 1, 16, 16)
    with _OpCounter() as c:
        out = model(x)
        out.sum().backward()
        decode(out, threshold=0.0)
    dops = {k: v for k, v in c.calls.items() if k.startswith("deepops.")}
    convs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert dops.get("deepops.conv2d", 0) == convs
    assert dops.get("deepops.max_pool2d", 0) + dops.get("deepops.max_pool2d_with_indices", 0) >= 3  # 2 + decode
    assert sum(v for k, v in dops.items() if "relu" in k) >= 2 * 7  # forward and backward of 7 ReLUs
    assert any("nms" in k for k in dops)
    assert any("backward" in k and "conv" in k for k in dops), dops
    # and nothing of the network ran on PyTorch's own kernels
    banned = ("aten.convolution", "aten.conv2d", "aten.max_pool2d", "aten.relu", "aten.threshold", "aten.mkldnn")
    assert not [k for k in c.calls if k.startswith(banned)], c.calls
    # the torch.nn twin of the network has the same parameters and computes the same function
    ref = dnn.convert(copy.deepcopy(model), to="torch")
    assert not any(isinstance(m, dnn.Conv2d) for m in ref.modules())
    torch.testing.assert_close(ref(x), model(x), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------- training, tiling


def test_short_training_learns():
    """30 optimiser steps on one small batch: the loss falls by more than 40% (the pipeline can learn)."""
    torch.manual_seed(0)
    model = CellDetector(width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, heat, reg, mask = SyntheticBatches(["easy"], 4, seed=0, size=64).batch(0)
    losses = []
    for _ in range(30):
        loss = detector_loss(model(x), heat, reg, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:2]), losses


def test_tiling_equals_whole_image():
    torch.manual_seed(1)
    model = CellDetector(width=4).eval()
    with torch.no_grad():  # a livelier random heatmap: scores spread around the threshold
        model.head[-1].weight.mul_(30.0)
        model.head[-1].bias[0] = 0.0
    s = simcep.generate(simcep.preset("crowded", size=(136, 168)), 5)
    img = normalize(s.image)
    whole = detect(model, img, threshold=0.3, iou=0.4, tile=None)
    tiled = detect(model, img, threshold=0.3, iou=0.4, tile=96, overlap=64)  # 2 x 3 tiles
    assert len(whole[0]) > 10
    assert len(tiled[0]) == len(whole[0])
    # one-to-one: every whole-image detection has its own tiled twin (same box and score up to float rounding)
    d = np.abs(whole[0][:, None, :] - tiled[0][None, :, :]).max(-1) + np.abs(whole[1][:, None] - tiled[1][None, :])
    twin = d.argmin(1)
    assert len(set(twin.tolist())) == len(twin)
    assert d[np.arange(len(twin)), twin].max() < 1e-3
    with pytest.raises(ValueError, match="overlap"):
        detect(model, img, tile=128, overlap=16)


def test_make_batch_flips_keep_truth():
    s = simcep.generate("easy", 2)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, heat, reg, mask = make_batch([s], augment=rng)
        # every target centre sits on a bright spot of the (possibly flipped) image
        ii, jj = torch.nonzero(mask[0], as_tuple=True)
        assert len(ii) == s.count or len(ii) == len({(int(a), int(b)) for a, b in zip(ii, jj)})
        vals = [x[0, 0, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean() for i, j in zip(ii.tolist(), jj.tolist())]
        assert np.median(vals) > 0.3


@pytest.mark.slow
def test_training_reaches_easy_goal_quickly():
    """A shortened goal run: ~150 steps on easy images must give F1 >= 0.9 on held-out easy images."""
    from deepops.detection.evaluate import evaluate_preset

    torch.manual_seed(0)
    model = CellDetector(width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = SyntheticBatches(["easy"], 16, seed=0, size=128)
    for k in range(150):
        x, heat, reg, mask = data.batch(k)
        loss = detector_loss(model(x), heat, reg, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    res, _, _ = evaluate_preset(model, "easy", 50, modes=["peaks+nms"])
    assert res["peaks+nms"]["f1"] >= 0.9, res


# --------------------------------------------------------------------------------------------- the CLI


def test_cli_train_count_predict(tmp_path, capsys):
    import tifffile
    from PIL import Image

    from deepops.cli import main

    run = tmp_path / "run"
    base = ["train", "detector", "--out", str(run), "--steps", "2", "--batch-size", "2", "--width", "4", "--size", "64"]
    assert main(base + ["--epochs", "1", "--val-images", "2", "--no-progress"]) == 0
    assert main(base + ["--epochs", "2", "--val-images", "0", "--no-progress", "--resume", str(run / "last.pt")]) == 0
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["epoch"] == 2 and len(state["metrics"]) == 2 and state["config"]["width"] == 4

    s = simcep.generate("easy", 0)
    img8 = s.image
    img16 = (s.image.astype(np.uint16) * 257)
    tifffile.imwrite(tmp_path / "a.tif", img8)
    tifffile.imwrite(tmp_path / "b.tif", np.stack([np.zeros_like(img16), img16]), imagej=True, metadata={"axes": "CYX"})
    Image.fromarray(np.stack([np.zeros_like(img8), np.zeros_like(img8), img8], -1)).save(tmp_path / "c.png")
    Image.fromarray(np.tile(img8, (3, 3))).save(tmp_path / "big.png")  # 672 x 672: tiled at --tile 256
    out = tmp_path / "counts"
    files = [str(tmp_path / n) for n in ("a.tif", "b.tif", "c.png", "big.png")]
    capsys.readouterr()
    # --channel 1 applies to every image: the single-channel ones refuse it with a clear message
    with pytest.raises(SystemExit, match="single channel"):
        main(["count", files[0], "--checkpoint", str(run / "last.pt"), "--channel", "1", "--out", str(out)])
    assert main(["count", files[1], "--checkpoint", str(run / "last.pt"), "--channel", "1", "--threshold", "0.05",
                 "--out", str(out)]) == 0
    assert main(["count", files[0], files[2], files[3], "--checkpoint", str(run / "last.pt"), "--threshold", "0.05",
                 "--tile", "256", "--overlap", "64", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("a", "b", "c", "big"):
        rows = (out / f"{name}.csv").read_text().strip().splitlines()
        assert rows[0] == "index,x1,y1,x2,y2,score,axis-0,axis-1"
        assert f"{name}.{'tif' if name in 'ab' else 'png'}: {len(rows) - 1} cells" in printed
        assert Image.open(out / f"{name}_overlay.png").size[0] >= 224
    assert Image.open(out / "big_overlay.png").size == (672, 672)
    # the 8-bit TIFF, the 16-bit TIFF's second channel and the PNG's blue channel are the same picture
    a, b, c = ((out / f"{n}.csv").read_text() for n in "abc")
    assert a == b == c
    with pytest.raises(SystemExit, match="out of range"):
        main(["count", files[2], "--checkpoint", str(run / "last.pt"), "--channel", "5"])

    assert main(["predict", "detector", "--checkpoint", str(run / "last.pt"), "--images", "3", "--presets", "easy",
                 "--out", str(tmp_path / "ev")]) == 0
    import json

    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert set(rep["easy"]) >= {"raw", "nms", "peaks", "peaks+nms"} and rep["easy"]["raw"]["images"] == 3
    assert (tmp_path / "ev" / "overlay_easy.png").is_file()
