"""The image classifiers' family of the training loop (``deepops train classifier``) and prediction
(``deepops predict classifier``).

Strategy: the data sets are small and held in memory (deepops.data), so a step is plain PyTorch: Adam with one
warm-up epoch at lr / 10, then a cosine decay to lr / 50 computed from the epoch (:func:`lr_at`; nothing extra to
checkpoint), cross-entropy, batched augmentation driven by a per-epoch (and per-process) seeded generator.  Each
epoch visits the training split in an order seeded by the seed and the epoch; under ``torchrun`` every process
takes its share of each global batch (``deepops.train.loop.shard``) and DistributedDataParallel averages the
gradients; evaluation is sharded too and the counts are summed over processes, so every process sees the same
metrics.  The loop (``deepops.train.loop``) does devices, seeding, checkpoints, ``--resume``, ``metrics.json``
and ``curves.png``; this family adds ``confusion.png`` and the test-split evaluation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as D
from .. import models as M
from . import common as C
from .loop import Family, LoopOptions, Run, run, shard
from .schedule import cosine, set_lr


@dataclasses.dataclass
class TrainConfig:
    model: str = "lenet"
    data: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    device: str | None = None
    seed: int = 0
    out: str | None = "runs/classifier"
    resume: str | None = None
    impl: str = "deepops"  # "torch": the identical torch.nn network (the reference for comparisons)
    augment: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    image_size: int | None = None  # None: the data set's own (16 for digits, 32 for folders)
    progress: bool | None = None  # None: a bar when stderr is a terminal (or in a notebook)
    threads: int | None = None  # torch intra-op threads (None: leave as is)
    stop_after: int | None = None  # stop this run after so many epochs (a time slot); --resume continues it
    time_limit: float | None = None  # seconds of training; stops before an epoch that would pass it

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` to ``lr / 50`` over the epochs, after one epoch of linear warm-up from lr / 10."""
    if epoch == 0 and cfg.epochs > 2:
        return cfg.lr / 10
    return cosine(epoch / max(cfg.epochs - 1, 1), cfg.lr, cfg.lr / 50)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, num_classes: int, dist: C.Dist, device, batch: int = 512) -> dict:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted), summed over processes."""
    m = C.unwrap(model)
    was = m.training
    m.eval()
    idx = torch.arange(dist.rank, len(y), dist.world_size)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    for i in range(0, len(idx), batch):
        j = idx[i : i + batch]
        xb, yb = x[j].to(device), y[j].to(device)
        logits = m(xb)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double().cpu()
        pred = logits.argmax(1).cpu()
        conf.index_put_((yb.cpu(), pred), torch.ones(len(j), dtype=torch.float64), accumulate=True)
    m.train(was)
    both = C.all_reduce(torch.cat([conf.flatten(), loss_sum]), dist, "sum")
    conf = both[:-1].view(num_classes, num_classes)
    n = conf.sum().item()
    return {
        "loss": both[-1].item() / max(n, 1),
        "acc": conf.diag().sum().item() / max(n, 1),
        "n": int(n),
        "confusion": conf.long().tolist(),
    }


class Classifier(Family):
    """LeNet-5 / AlexNet-style classification of the digits or an image folder (see the module's docstring)."""

    name = "classifier"
    arch_keys = ("model", "data", "image_size")

    def __init__(self, cfg: TrainConfig, split: D.Split | None = None):
        self.cfg, self.split = cfg, split

    def setup(self, run: Run) -> None:
        cfg = self.cfg
        if cfg.batch_size < 1:
            raise SystemExit("deepops train classifier: '--batch-size' must be at least 1")
        if not cfg.lr > 0:
            raise SystemExit("deepops train classifier: '--lr' must be positive")
        if self.split is None:
            self.split = D.load(cfg.data, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.image_size)
        split, self.run = self.split, run
        self.model = M.build(cfg.model, split.channels, len(split.classes), split.image_size, impl=cfg.impl).to(run.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ddp = run.wrap(self.model)
        self.augment = D.Augment() if cfg.augment else None
        self.background = [-m / s for m, s in zip(split.mean, split.std)]  # where raw 0 (no ink) lands after normalising

    def config(self) -> dict:
        s = self.split
        return self.cfg.to_json() | {"classes": s.classes, "mean": s.mean, "std": s.std, "in_channels": s.channels,
                                     "image_size": s.image_size}

    def describe(self) -> str:
        return f"{self.split.describe()}; model {self.cfg.model} ({self.cfg.impl})"

    def start_epoch(self, epoch: int) -> list[torch.Tensor]:
        cfg, run = self.cfg, self.run
        set_lr(self.optimizer, lr_at(cfg, epoch))
        order = torch.randperm(len(self.split.y_train), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        self.gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch * 1009 + run.rank)
        return shard(order, cfg.batch_size, run.rank, run.world_size, drop_last=False)

    def step(self, epoch: int, i: int, j: torch.Tensor) -> tuple[dict[str, float], int]:
        xb, yb = self.split.x_train[j], self.split.y_train[j]
        if self.augment is not None:
            xb = self.augment(xb, self.gen, torch.tensor(self.background))
        xb, yb = xb.to(self.run.device), yb.to(self.run.device)
        logits = self.ddp(xb)
        loss = F.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"train_loss": loss.item() * len(j), "train_acc": (logits.argmax(1) == yb).sum().item()}, len(j)

    def end_epoch(self, epoch: int, rec: dict) -> None:
        s = self.split
        val = (evaluate(self.model, s.x_val, s.y_val, len(s.classes), self.run.dist, self.run.device) if len(s.y_val)
               else {"loss": float("nan"), "acc": float("nan")})
        rec["val_loss"], rec["val_acc"] = val["loss"], val["acc"]

    def line(self, rec: dict) -> str:
        return (f"loss {rec['train_loss']:.4f}  acc {rec['train_acc']:.4f}  val loss {rec['val_loss']:.4f}  "
                f"val acc {rec['val_acc']:.4f}")

    def curves(self) -> list:
        return [("cross-entropy", {"train": "train_loss", "validation": "val_loss"}, True),
                ("accuracy", {"train": "train_acc", "validation": "val_acc"}, False)]

    def summary(self, run: Run, history: list[dict]) -> dict:
        s = self.split
        test = evaluate(self.model, s.x_test, s.y_test, len(s.classes), run.dist, run.device)
        t_train = sum(h.get("seconds", 0.0) for h in history)
        run.log(f"test accuracy {test['acc']:.4f} ({test['n']} images)")
        return {
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "test_n": test["n"],
            "confusion": test["confusion"],
            "train_seconds": t_train,
            "train_cpu_seconds": sum(h.get("cpu_seconds", 0.0) for h in history),
            "seconds_per_epoch": t_train / max(len(history), 1),
        }

    def write_outputs(self, out: Path, result: dict) -> None:
        plot_confusion(np.array(result["confusion"]), self.split.classes, out / "confusion.png", result["test_acc"])


def train(cfg: TrainConfig, split: D.Split | None = None, command: str | None = None) -> dict:
    """Train per ``cfg``; returns the metrics (also written to ``out/metrics.json`` when ``out`` is set)."""
    opts = LoopOptions(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device, out=cfg.out, resume=cfg.resume,
                       time_limit=cfg.time_limit, stop_after=cfg.stop_after, progress=cfg.progress,
                       threads=cfg.threads, command=command)
    return run(Classifier(cfg, split), opts)


# --------------------------------------------------------------------------------------------------------- plots


def plot_confusion(conf: np.ndarray, classes: list[str], path: Path, acc: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1.0 + 0.45 * n))
    ax.imshow(conf, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if conf[i, j] > conf.max() / 2 else "black")
    ax.set_xticks(range(n), classes, fontsize=7), ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"test accuracy {acc:.4f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------- predict


def load_model(checkpoint: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The trained model (eval mode) and its config from a checkpoint written by :func:`train`."""
    st = C.load_checkpoint(checkpoint)
    c = st["config"]
    if "classes" not in c or c.get("model") not in M.MODELS:
        raise SystemExit(f"{checkpoint} is not a classifier checkpoint")
    model = M.build(c["model"], c["in_channels"], len(c["classes"]), c["image_size"], impl=c.get("impl", "deepops"))
    model.load_state_dict(st["model"])
    return model.to(device).eval(), c


@torch.no_grad()
def predict(model: torch.nn.Module, config: dict, images: list[np.ndarray], device="cpu") -> torch.Tensor:
    """Class probabilities (N, classes) for images as read by :func:`deepops.data.read_image`."""
    x = torch.stack([D.to_model_input(a, config["image_size"], config["in_channels"]) for a in images])
    x = D.normalise(x, config["mean"], config["std"]).to(device)
    return torch.softmax(model(x), 1).cpu()

