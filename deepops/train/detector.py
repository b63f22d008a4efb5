"""The cell detector's family of the training loop (``deepops train detector``).

Strategy: ``deepops.models.detector.CellDetector`` is trained on SIMCEP-like images generated on the fly
(``deepops.detection.data.SyntheticBatches``: batch k of process r is drawn from the seed sequence (seed, r, k), so
a resumed run and every torchrun process continue their own stream) with CenterNet's loss (focal loss on the centre
heatmap, L1 on offsets and sizes), Adam, and a learning rate that rises linearly over the first steps (a tenth of the
run, at most 50) and then falls along a cosine to 5 % at the end of the run.  The run's progress is counted in steps
-- or, with ``--time-limit``, by the training time when that is further along -- so a time-limited run still ends
its schedule.  An "epoch" is ``--steps`` optimisation steps; after each, rank 0 scores ``--val-images`` held-out
images per preset (F1 and count error after peak finding and NMS).  The loop (``deepops.train.loop``) does devices,
seeding, checkpoints, ``--resume``, ``metrics.json`` and ``curves.png``; this family also writes ``history.json``
(the history alone, which ``benchmarks/detector_goals.py`` reads).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import torch

from .._report import write_json
from ..detection.data import SyntheticBatches, detector_loss
from ..detection.decode import DEFAULT_IOU, DEFAULT_THRESHOLD
from ..models.detector import CellDetector
from .loop import Family, LoopOptions, Run, run
from .schedule import cosine, set_lr, warmup

WARMUP_STEPS = 50  # at most; a tenth of the run when that is shorter
FINAL_LR = 0.05  # the learning rate at the end of the run, as a fraction of --lr


@dataclasses.dataclass
class DetectorConfig:
    presets: list[str] = dataclasses.field(default_factory=lambda: ["easy", "crowded"])
    epochs: int = 12
    steps: int = 40  # optimisation steps per epoch
    batch_size: int = 16  # global: divided among torchrun processes
    lr: float = 3e-3
    width: int = 16  # channels of the middle stage
    size: int = 128  # training image side; nuclei count scaled to keep the density
    seed: int = 0
    device: str | None = None
    out: str | None = "runs/detector"
    resume: str | None = None
    workers: int = 0  # DataLoader worker processes generating images
    val_images: int = 32  # held-out images per preset scored after each epoch
    time_limit: float | None = None  # seconds of training
    threads: int | None = None
    stop_after: int | None = None
    progress: bool | None = None


class _Take:
    """The next ``n`` items of an endless iterator, as a sized iterable (one epoch of generated batches)."""

    def __init__(self, it: Iterator, n: int):
        self.it, self.n = it, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield next(self.it)


class Detector(Family):
    """CenterNet-style nucleus detection on generated images (see the module's docstring)."""

    name = "detector"
    arch_keys = ("width",)

    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg

    def setup(self, run: Run) -> None:
        cfg, self.run = self.cfg, run
        for arg in ("steps", "batch_size"):
            if getattr(cfg, arg) < 1:
                raise SystemExit(f"deepops train detector: '--{arg.replace('_', '-')}' must be at least 1")
        self.model = CellDetector(width=cfg.width).to(run.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.ddp = run.wrap(self.model)
        self.total = cfg.epochs * cfg.steps
        self.warm = min(WARMUP_STEPS, self.total // 10)

    def config(self) -> dict:
        return dataclasses.asdict(self.cfg) | {"in_channels": 1, "threshold": DEFAULT_THRESHOLD, "iou": DEFAULT_IOU}

    def describe(self) -> str:
        c = self.cfg
        return f"cell detector (width {c.width}) on generated {c.size}x{c.size} images of {', '.join(c.presets)}"

    def begin(self, run: Run, start_epoch: int) -> None:
        cfg = self.cfg
        data = SyntheticBatches(cfg.presets, run.batch_per_process(cfg.batch_size), cfg.seed, rank=run.rank,
                                start=start_epoch * cfg.steps, size=cfg.size)
        self.loader = iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=cfg.workers,
                                                       persistent_workers=cfg.workers > 0))

    def lr_at(self, step: int, progress: float) -> float:
        """A linear warm-up over ``self.warm`` steps, then a cosine from ``lr`` to ``FINAL_LR * lr`` as the run's
        ``progress`` goes from the end of the warm-up to 1."""
        if step < self.warm:
            return warmup(step, self.warm, self.cfg.lr)
        p0 = self.warm / self.total
        return self.cfg.lr * cosine((progress - p0) / max(1 - p0, 1e-9), 1.0, FINAL_LR)

    def start_epoch(self, epoch: int) -> _Take:
        return _Take(self.loader, self.cfg.steps)

    def step(self, epoch: int, i: int, batch) -> tuple[dict[str, float], int]:
        cfg, run = self.cfg, self.run
        step = epoch * cfg.steps + i
        progress = step / self.total
        if cfg.time_limit:
            progress = max(progress, run.elapsed() / cfg.time_limit)
        set_lr(self.optimizer, self.lr_at(step, progress))
        x, heat, reg, mask = (t.to(run.device, non_blocking=True) for t in batch)
        losses = detector_loss(self.ddp(x), heat, reg, mask)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.optimizer.step()
        return {k: float(losses[k].detach()) for k in ("loss", "heat", "reg")}, 1

    def end_epoch(self, epoch: int, rec: dict) -> None:
        from ..detection.evaluate import evaluate_preset

        cfg, run = self.cfg, self.run
        if run.is_main and cfg.val_images > 0:
            for preset in cfg.presets:
                res, _, _ = evaluate_preset(self.model, preset, cfg.val_images, seed=1, device=run.device,
                                            modes=["peaks+nms"])
                rec[f"val_{preset}_f1"] = res["peaks+nms"]["f1"]
                rec[f"val_{preset}_count_error"] = res["peaks+nms"]["count_error"]

    def curves(self) -> list:
        presets = self.cfg.presets
        return [("loss", {"total": "loss", "heatmap (focal)": "heat", "boxes (L1)": "reg"}, True),
                ("validation F1", {p: f"val_{p}_f1" for p in presets}, False),
                ("validation count error", {p: f"val_{p}_count_error" for p in presets}, False)]

    def write_outputs(self, out: Path, result: dict) -> None:
        write_json(out / "history.json", result["history"])


def train(cfg: DetectorConfig, command: str | None = None) -> dict:
    """Train per ``cfg``; returns what ``<out>/metrics.json`` holds."""
    opts = LoopOptions(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device, out=cfg.out, resume=cfg.resume,
                       time_limit=cfg.time_limit, stop_after=cfg.stop_after, progress=cfg.progress,
                       threads=cfg.threads, command=command)
    return run(Detector(cfg), opts)


__all__ = ["DetectorConfig", "Detector", "train"]
