"""Training and evaluating the image classifiers (``deepops train classifier`` / ``deepops predict classifier``).

Strategy: the data sets are small and held in memory (deepops.data), so the loop is plain PyTorch: Adam with a
cosine learning-rate decay computed from the epoch (nothing extra to checkpoint), cross-entropy, batched
augmentation on the device.  Under ``torchrun`` every process trains on its own shard of each epoch
(``DistributedSampler``, reshuffled per epoch with the seed), the per-process batch is ``batch_size / world_size``
so that the global batch does not depend on the number of processes, and gradients are averaged by
DistributedDataParallel; evaluation is sharded too and the counts are summed over processes, so every process
sees the same metrics.  Only rank 0 writes files: ``last.pt`` after every epoch (model, optimizer, epoch, config,
metrics, RNG states: ``--resume`` continues from it), ``metrics.json``, ``curves.png`` and ``confusion.png``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as D
from .. import models as M
from .._progress import Progress
from .common import (
    Dist,
    cleanup_distributed,
    load_checkpoint,
    resume,
    save_checkpoint,
    seed_everything,
    setup_distributed,
    unwrap,
    wrap_ddp,
    write_json,
)


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
    image_size: int | None = None  # None: the data set's own (8 for digits, 32 for folders)
    progress: bool | None = None  # None: a bar when stderr is a terminal
    threads: int | None = None  # torch intra-op threads (None: leave as is)
    stop_after: int | None = None  # stop this run after so many epochs (a time slot); --resume continues it

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def all_reduce_sum(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    if dist.enabled:
        import torch.distributed as tdist

        tdist.all_reduce(t)
    return t


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` to ``lr / 50`` over the epochs, after one epoch of linear warm-up from lr / 10."""
    if epoch == 0 and cfg.epochs > 2:
        return cfg.lr / 10
    t = epoch / max(cfg.epochs - 1, 1)
    lo = cfg.lr / 50
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * t))


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, num_classes: int, dist: Dist, device, batch: int = 512) -> dict:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted), summed over processes."""
    m = unwrap(model)
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
    both = all_reduce_sum(torch.cat([conf.flatten(), loss_sum]).to(device), dist).cpu()
    conf = both[:-1].view(num_classes, num_classes)
    n = conf.sum().item()
    return {
        "loss": both[-1].item() / max(n, 1),
        "acc": conf.diag().sum().item() / max(n, 1),
        "n": int(n),
        "confusion": conf.long().tolist(),
    }


def train(cfg: TrainConfig, split: D.Split | None = None) -> dict:
    """Train per ``cfg``; returns the metrics (also written to ``out/metrics.json`` when ``out`` is set)."""
    dist = setup_distributed(cfg.device)
    try:
        return _train(cfg, dist, split)
    finally:
        cleanup_distributed(dist)


def _train(cfg: TrainConfig, dist: Dist, split: D.Split | None) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for arg in ("epochs", "batch_size"):
        if getattr(cfg, arg) < 1:
            raise SystemExit(f"deepops train classifier: '--{arg.replace('_', '-')}' must be at least 1")
    if not cfg.lr > 0:
        raise SystemExit("deepops train classifier: '--lr' must be positive")
    seed_everything(cfg.seed)  # the same initial weights in every process
    if split is None:
        split = D.load(cfg.data, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.image_size)
    device = dist.device
    ncls = len(split.classes)
    model = M.build(cfg.model, split.channels, ncls, split.image_size, impl=cfg.impl).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history = resume(cfg.resume, model, opt)
    history = list(history or [])
    model = wrap_ddp(model, dist)
    out = Path(cfg.out) if cfg.out else None
    per_proc = max(cfg.batch_size // dist.world_size, 1)
    sampler = torch.utils.data.DistributedSampler(
        range(len(split.y_train)), num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    augment = D.Augment() if cfg.augment else None
    background = [-m / s for m, s in zip(split.mean, split.std)]  # where raw 0 (no ink) lands after normalising
    config = cfg.to_json() | {
        "classes": split.classes,
        "mean": split.mean,
        "std": split.std,
        "in_channels": split.channels,
        "image_size": split.image_size,
        "world_size": dist.world_size,
    }
    if dist.is_main:
        print(f"{split.describe()}; model {cfg.model} ({cfg.impl}), "
              f"{sum(p.numel() for p in model.parameters())} parameters, {dist.world_size} process(es) on {device}")
    t_train = sum(h.get("seconds", 0.0) for h in history)
    end = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start + cfg.stop_after)
    for epoch in range(start, end):
        t0, c0 = time.perf_counter(), time.process_time()
        lr = lr_at(cfg, epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)), dtype=torch.long)
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch * 1009 + dist.rank)
        nb = math.ceil(len(order) / per_proc)
        bar = Progress(nb, f"epoch {epoch + 1}/{cfg.epochs} ", enabled=cfg.progress if dist.is_main else False)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(nb):
            j = order[b * per_proc : (b + 1) * per_proc]
            xb, yb = split.x_train[j], split.y_train[j]
            if augment is not None:
                xb = augment(xb, gen, torch.tensor(background))
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(j)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(j)
            bar.update(text=f"loss {loss_sum / seen:.4f} acc {correct / seen:.3f}")
        bar.close()
        sums = all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=device), dist).cpu()
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0  # CPU time of this process: what a busy machine does not inflate
        t_train += seconds
        val = evaluate(model, split.x_val, split.y_val, ncls, dist, device) if len(split.y_val) else {"loss": float("nan"), "acc": float("nan")}
        h = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": sums[0].item() / sums[2].item(),
            "train_acc": sums[1].item() / sums[2].item(),
            "val_loss": val["loss"],
            "val_acc": val["acc"],
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
        history.append(h)
        if dist.is_main:
            print(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {h['train_loss']:.4f}  acc {h['train_acc']:.4f}  "
                  f"val loss {h['val_loss']:.4f}  val acc {h['val_acc']:.4f}  {seconds:.1f}s", flush=True)
            if out is not None:
                save_checkpoint(out / "last.pt", model, opt, epoch + 1, config, history)
    test = evaluate(model, split.x_test, split.y_test, ncls, dist, device)
    result = {
        "config": config,
        "history": history,
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "test_n": test["n"],
        "confusion": test["confusion"],
        "train_seconds": t_train,
        "train_cpu_seconds": sum(h.get("cpu_seconds", 0.0) for h in history),
        "seconds_per_epoch": t_train / max(len(history), 1),
    }
    if dist.is_main:
        print(f"test accuracy {test['acc']:.4f} ({test['n']} images), training time {t_train:.1f}s "
              f"(CPU time of this process {result['train_cpu_seconds']:.1f}s)")
        if out is not None:
            if not (out / "last.pt").exists():  # nothing trained in this call (resumed a finished run)
                save_checkpoint(out / "last.pt", model, opt, len(history), config, history)
            write_json(out / "metrics.json", result)
            plot_curves(history, out / "curves.png")
            plot_confusion(np.array(test["confusion"]), split.classes, out / "confusion.png", test["acc"])
    return result


# --------------------------------------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path) -> None:
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.set_yscale("log"), a.legend()
    b.plot(ep, [h["train_acc"] for h in history], label="train")
    b.plot(ep, [h["val_acc"] for h in history], label="validation")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(conf: np.ndarray, classes: list[str], path: Path, acc: float) -> None:
    plt = _plt()
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
    st = load_checkpoint(checkpoint)
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


def summary(result: dict) -> dict[str, Any]:
    return {k: result[k] for k in ("test_acc", "test_n", "train_seconds", "train_cpu_seconds", "seconds_per_epoch")}
