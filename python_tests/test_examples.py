"""The transfer-learning and SVM-on-features examples run end to end (tiny settings here; the committed full runs
are in benchmarks/results/classifier/)."""

from __future__ import annotations

import json

import numpy as np
import torch

from deepops import models as M
from deepops.examples import svm_features, transfer


def test_transfer_example_small(tmp_path):
    out = tmp_path / "t.json"
    assert transfer.main(["--shots", "2", "--repeats", "1", "--base-epochs", "2", "--head-epochs", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["base_acc_digits_0_4"] > 0.5 and r["test_images_5_9"] > 200
    row = r["rows"][0]
    assert row["shots_per_class"] == 2 and 0 <= row["transfer_acc_mean"] <= 1 and 0 <= row["scratch_acc_mean"] <= 1


def test_head_reset_freezes_features_only():
    m = M.build("lenet", 1, 5, 16)
    before = [p.clone() for p in m.features.parameters()]
    transfer._head_reset(m, 5, 0)
    assert all(not p.requires_grad for p in m.features.parameters())
    assert all(p.requires_grad for p in m.classifier.parameters())
    m(torch.randn(2, 1, 16, 16)).sum().backward()
    assert all(p.grad is None for p in m.features.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, m.features.parameters()))


def test_svm_on_features_small(tmp_path):
    r = svm_features.run(seed=0, epochs=8, train_images=150)
    for k in ("network_head_test_acc", "svm_on_penultimate_features_test_acc", "svm_on_pixels_test_acc"):
        assert 0.3 < r[k] <= 1.0, (k, r[k])
    assert r["svm_on_penultimate_features_params"]["dim"] == 84
    # the SVM's selection picked its C/gamma on validation accuracy (not on the test split)
    assert 0 < r["svm_on_pixels_params"]["val_acc"] <= 1 and np.isfinite(r["seconds"])
