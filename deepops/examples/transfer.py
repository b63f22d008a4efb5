"""Transfer learning, as the lecture shows it, on the digits (offline).

1. Train the LeNet-5-style network (deepops layers) on the digits 0-4 only.
2. Freeze its convolutional ``features``; give it a fresh fully connected head for the digits 5-9 and train only
   that head on very few labelled examples per class (k = 1, 3, 5, 10, 20).
3. Compare with the same network trained from scratch (all layers, random initialisation) on the same k examples.

Both are evaluated on every 5-9 digit of the (seeded) test split, and each k is repeated over several draws of
the k examples (``--repeats``), reporting the mean and the spread.  Run::

    python -m deepops.examples.transfer --out benchmarks/results/classifier/transfer.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from .. import data as D
from .. import models as M
from .._report import format_seconds, write_json
from ._fit import accuracy, fit


def _head_reset(model: torch.nn.Module, num_classes: int, seed: int) -> None:
    """Re-initialise every Linear of the head (the last one with ``num_classes`` outputs); freeze ``features``."""
    torch.manual_seed(seed)
    for i, m in enumerate(model.classifier):
        if isinstance(m, torch.nn.Linear):
            last = i == len(model.classifier) - 1
            model.classifier[i] = torch.nn.Linear(m.in_features, num_classes if last else m.out_features)
    for p in model.features.parameters():
        p.requires_grad_(False)


def run(seed: int = 0, shots=(1, 3, 5, 10, 20), repeats: int = 3, base_epochs: int = 20, head_epochs: int = 60) -> dict:
    torch.manual_seed(seed)
    s = D.load("digits", seed=seed)
    bg = -s.mean[0] / s.std[0]
    lo_tr, hi_tr = s.y_train < 5, s.y_train >= 5
    lo_te, hi_te = s.y_test < 5, s.y_test >= 5
    t0 = time.perf_counter()
    base = M.build("lenet", 1, 5, s.image_size)
    fit(base, s.x_train[lo_tr], s.y_train[lo_tr], base_epochs, seed=seed, background=bg)
    base_acc = accuracy(base, s.x_test[lo_te], s.y_test[lo_te])
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    x_hi, y_hi = s.x_train[hi_tr], s.y_train[hi_tr] - 5
    xt, yt = s.x_test[hi_te], s.y_test[hi_te] - 5
    rows = []
    for k in shots:
        tr, sc = [], []
        for r in range(repeats):
            g = torch.Generator().manual_seed(1000 * seed + 17 * k + r)
            pick = torch.cat([torch.nonzero(y_hi == c)[:, 0][torch.randperm(int((y_hi == c).sum()), generator=g)[:k]] for c in range(5)])
            xs, ys = x_hi[pick], y_hi[pick]
            # transfer: frozen features from the 0-4 network, new head
            m = M.build("lenet", 1, 5, s.image_size)
            m.load_state_dict(base_state)
            _head_reset(m, 5, seed + r)
            fit(m, xs, ys, head_epochs, params=m.classifier.parameters(), batch=16, seed=r, background=bg)
            tr.append(accuracy(m, xt, yt))
            # scratch: the same network, all layers trained on the same k examples
            torch.manual_seed(seed + r)
            m2 = M.build("lenet", 1, 5, s.image_size)
            fit(m2, xs, ys, head_epochs, batch=16, seed=r, background=bg)
            sc.append(accuracy(m2, xt, yt))
        rows.append({
            "shots_per_class": k,
            "transfer_acc_mean": statistics.mean(tr), "transfer_acc_all": tr,
            "scratch_acc_mean": statistics.mean(sc), "scratch_acc_all": sc,
        })
        print(f"k={k:3d} per class: transfer {statistics.mean(tr):.4f} ({', '.join(f'{a:.3f}' for a in tr)})   "
              f"scratch {statistics.mean(sc):.4f} ({', '.join(f'{a:.3f}' for a in sc)})", flush=True)
    return {
        "what": "LeNet (deepops) trained on digits 0-4, features frozen, head retrained on k examples per class of 5-9",
        "seed": seed, "repeats": repeats, "base_epochs": base_epochs, "head_epochs": head_epochs,
        "base_acc_digits_0_4": base_acc, "test_images_5_9": int(hi_te.sum()),
        "rows": rows, "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shots", default="1,3,5,10,20")
    p.add_argument("--base-epochs", type=int, default=20)
    p.add_argument("--head-epochs", type=int, default=60)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    res = run(a.seed, tuple(int(k) for k in a.shots.split(",")), a.repeats, a.base_epochs, a.head_epochs)
    print(f"base network on digits 0-4: test accuracy {res['base_acc_digits_0_4']:.4f}; "
          f"{format_seconds(res['seconds'])} in all")
    if a.out:
        cmd = "python -m deepops.examples.transfer " + " ".join(sys.argv[1:] if argv is None else argv)
        write_json(a.out, res | {"command": cmd})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
