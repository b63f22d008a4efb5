"""The lecture's question: can an SVM on learned deep features do better than the network's own head?

1. Train the LeNet-5-style network (deepops layers) on the digits training split.
2. ``deepops.models.features(model, x)``: the penultimate-layer activations (the 84 numbers the last linear layer
   classifies) and, for comparison, the flattened convolutional features.
3. Fit scikit-learn's SVM (RBF kernel, C and gamma chosen on the validation split, features standardised) on the
   training features and compare its test accuracy with the network's own head -- and with an SVM on the raw
   pixels, the classical baseline.  Also with few training images (``--small``), where the choice matters more.

Run::

    python -m deepops.examples.svm_features --out benchmarks/results/classifier/svm_features.json
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .. import data as D
from .. import models as M
from .._report import format_seconds, write_json
from ._fit import accuracy, fit


def svm_accuracy(f_tr, y_tr, f_va, y_va, f_te, y_te) -> tuple[float, dict]:
    """Test accuracy of an RBF SVM whose C and gamma are picked by validation accuracy."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    best = (-1.0, None)
    for c in (0.1, 1.0, 10.0, 100.0):
        for g in ("scale", 0.3, 0.03, 0.003):
            clf = make_pipeline(StandardScaler(), SVC(C=c, gamma=g)).fit(f_tr, y_tr)
            va = clf.score(f_va, y_va)
            if va > best[0]:
                best = (va, {"C": c, "gamma": g, "val_acc": va, "clf": clf})
    params = best[1]
    return float(params.pop("clf").score(f_te, y_te)), params


def run(seed: int = 0, epochs: int = 30, train_images: int | None = None) -> dict:
    torch.manual_seed(seed)
    s = D.load("digits", seed=seed)
    if train_images:
        s = s.subset(train_images)
    t0 = time.perf_counter()
    model = M.build("lenet", 1, 10, s.image_size)
    fit(model, s.x_train, s.y_train, epochs, seed=seed, background=-s.mean[0] / s.std[0])
    head = accuracy(model, s.x_test, s.y_test)
    out = {"train_images": len(s.y_train), "epochs": epochs, "network_head_test_acc": head}
    y = [t.numpy() for t in (s.y_train, s.y_val, s.y_test)]
    for layer in ("penultimate", "conv"):
        f = [M.features(model, x).numpy() if layer == "penultimate" else M.features(model, x, layer="conv").numpy()
             for x in (s.x_train, s.x_val, s.x_test)]
        acc, params = svm_accuracy(f[0], y[0], f[1], y[1], f[2], y[2])
        out[f"svm_on_{layer}_features_test_acc"] = acc
        out[f"svm_on_{layer}_features_params"] = params | {"dim": int(f[0].shape[1])}
    px = [x.flatten(1).numpy() for x in (s.x_train, s.x_val, s.x_test)]
    acc, params = svm_accuracy(px[0], y[0], px[1], y[1], px[2], y[2])
    out["svm_on_pixels_test_acc"], out["svm_on_pixels_params"] = acc, params
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--small", type=int, default=100, help="also run with only this many training images (0: skip)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    runs = {"full": run(a.seed, a.epochs)}
    if a.small:
        runs[f"{a.small}_images"] = run(a.seed, a.epochs * 3, a.small)  # same number of steps, roughly
    for name, r in runs.items():
        print(f"{name} ({r['train_images']} training images): network head {r['network_head_test_acc']:.4f}  "
              f"SVM on penultimate features {r['svm_on_penultimate_features_test_acc']:.4f}  "
              f"SVM on conv features {r['svm_on_conv_features_test_acc']:.4f}  "
              f"SVM on pixels {r['svm_on_pixels_test_acc']:.4f}  ({format_seconds(r['seconds'])})")
    if a.out:
        cmd = "python -m deepops.examples.svm_features " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, {"seed": a.seed, "command": cmd, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
