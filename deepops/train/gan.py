"""The DCGAN family of the training loop (``deepops.models.gan``): data, the adversarial step, sample grids and the score.

Strategy.  The DCGAN recipe, plus two additions that the digits (only 1,797 images) need:

* Adam with learning rate 2e-4 and betas (0.5, 0.999) for both networks (the DCGAN paper's settings); both rates
  fall linearly to 0 over the last half of the steps (``lr_decay`` = 0.5);
* the discriminator is trained on a real batch and a fake batch with binary cross-entropy on logits, with one-sided
  label smoothing (real targets 0.9, fakes 0) so it does not become over-confident; the generator with the
  non-saturating loss (fakes labelled real, target 1);
* differentiable augmentation (``augment`` = 2, after Zhao et al., "Differentiable Augmentation for Data-Efficient
  GAN Training", 2020): every image the discriminator sees -- real or fake, in both networks' steps -- is moved
  by its own random translation of up to 2 pixels.  On a small dataset the discriminator otherwise memorises the
  real images and wins (measured here: discriminator loss 0.46, generator loss 2.5 after 40 epochs, classifier
  confidence on samples stuck at 0.78-0.80); with the shifts the two stay balanced (losses about 1.0 and 1.2) and
  the Fréchet distance after 40 epochs falls from 257 to 62.  Because fakes are shifted the same way, and the
  generator's gradient passes through the shift, the generator does not learn to produce shifted digits;
* samples and scores come from an exponential moving average of the generator's weights (``ema`` = 0.999 per
  step, batch-norm statistics copied), which smooths the last epochs' oscillation; the raw weights are scored too;
* small batches (32) and a generator twice as wide as the discriminator (96 and 48 channels): on the CPU the narrow
  layers cost little more when widened (per-call overhead dominates); wider still (128/64) was not better;
* one discriminator step per generator step, the fakes of the generator step are the same as the discriminator's;
  real and fake batches pass the discriminator separately (batch norm sees one kind at a time).

The GAN is a family of the shared training loop (``deepops.train.loop``: devices, seeding, progress, ``last.pt``
and ``--resume``, ``metrics.json``, ``curves.png``, ``--time-limit``, torchrun).  Every epoch (a pass over the data
in a seeded order) also saves ``samples_epoch<NNN>.png`` -- the generator's images for a fixed noise batch, so
progress can be watched; the checkpoint holds both networks, both optimisers, the weight average, the fixed noise,
the RNG states and the history, so ``--resume last.pt`` continues exactly where it stopped.  On the digits, the
score of ``deepops.metrics.gan_score`` (Fréchet distance in our classifier's feature space, confidence, classes) is
computed for the untrained generator and then after each epoch; the scorer is trained first, seeded, and stored in
the checkpoint so that ``deepops sample gan --score`` can reuse it.  ``summary.json`` is the final ``metrics.json``
under the name earlier versions wrote.  Under torchrun the generator and the discriminator are each wrapped in
DistributedDataParallel, every process takes its share of each global batch and draws its own noise and shifts;
rank 0 scores and writes the sample grids.

Data (``load_data``): ``digits`` (scikit-learn's bundled 8x8 digits, upsampled bilinearly), ``cells`` (SIMCEP-like
patches from ``deepops.data.simcep``) or a folder of PNG/JPEG/TIFF images (any sub-folders, read by
``deepops.data.images.read_image``), each centre-cropped to a square and resized.  Images are scaled to [-1, 1], the
range of the generator's tanh.  On the CPU, with the same seed, training is deterministic (the deepops kernels
reduce in a fixed order).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import types
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._report import format_seconds, write_json
from ..data.images import IMAGE_SUFFIXES, default_channels, read_image, to_channels, to_float01
from ..data import simcep
from ..models.gan import DCGAN
from .common import seed_everything, unwrap
from .loop import Family, LoopOptions, Run, run, shard
from .schedule import linear_tail, set_lr


@dataclasses.dataclass
class GanConfig:
    data: str = "digits"
    image_size: int = 16
    channels: int | None = None  # None: from the data (1 for digits and cells)
    z_dim: int = 32
    g_width: int = 96
    d_width: int = 48
    epochs: int = 100
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    real_label: float = 0.9  # one-sided label smoothing
    lr_decay: float = 0.5  # fraction of the run (last steps) over which both learning rates fall linearly to 0
    seed: int = 0
    device: str | None = None
    out: str = "runs/gan"
    n_grid: int = 64  # images in the per-epoch sample grid
    score: bool | None = None  # None: on for digits
    score_n: int = 1000
    ema: float = 0.999  # decay of the generator's weight average used for samples and scores (0: the raw weights)
    time_limit: float | None = None  # seconds of training; stops before an epoch that would not fit
    limit_images: int | None = None  # use only the first N images (smoke tests)
    augment: int = 2  # pixels of random translation applied to every image the discriminator sees (0: off)
    threads: int | None = None  # torch CPU threads per process (None: as they are)
    stop_after: int | None = None  # stop this call after so many epochs; --resume continues the schedule


# --------------------------------------------------------------------------------------------------------- data


def _digits(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x * 2 - 1, torch.tensor(d.target)


CELL_PATCHES = 2048  # how many SIMCEP-like patches --data cells generates


def _cells(image_size: int, channels: int, n: int = CELL_PATCHES, seed: int = 0) -> torch.Tensor:
    """Patches of ``image_size`` pixels with one to three nuclei each, from the ``easy`` SIMCEP-like family with the
    nucleus radius scaled to the patch (about a fifth of its side)."""
    side = max(image_size, 16)  # the generator's smallest image
    p = simcep.preset(
        "easy", size=(side, side), n_cells=(1, 3), radius=side * 0.2, radius_sd=side * 0.03,
        radius_min=side * 0.1, blur_sigma=(0.3, 1.0),
    )
    imgs = [simcep.generate(p, np.random.default_rng([seed, i])).image for i in range(n)]
    x = torch.from_numpy(np.stack(imgs).astype(np.float32))[:, None]
    x = x / float(np.iinfo(imgs[0].dtype).max)
    if side != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="area")
    return (x.expand(-1, channels, -1, -1).contiguous() if channels > 1 else x) * 2 - 1


def _folder(path: Path, image_size: int, channels: int | None) -> torch.Tensor:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"--data {path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found there")
    arrays = [read_image(f) for f in files]
    if channels is None:
        channels = default_channels(arrays)
    out = []
    for a in arrays:
        t = torch.from_numpy(to_float01(a).astype(np.float32))
        t = to_channels(t[None] if t.ndim == 2 else t.permute(2, 0, 1), channels)
        h, w = t.shape[1:]
        s = min(h, w)
        t = t[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        mode = "area" if s > image_size else "bilinear"
        out.append(F.interpolate(t[None], size=(image_size, image_size), mode=mode).clamp(0, 1)[0])
    return torch.stack(out) * 2 - 1


def load_data(spec: str, image_size: int, channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images in [-1, 1] of shape (N, C, image_size, image_size), labels or None) for ``digits``, ``cells`` or a
    folder of images."""
    if spec == "digits":
        if channels not in (None, 1):
            raise SystemExit("--data digits is grey: --channels must be 1")
        return _digits(image_size)
    if spec == "cells":
        return _cells(image_size, channels or 1), None
    p = Path(spec)
    if not p.is_dir():
        raise SystemExit(f"--data must be digits, cells or a folder of images; {spec!r} is none of these")
    return _folder(p, image_size, channels), None


# ------------------------------------------------------------------------------------------------------- images


def grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, min_tile: int = 32) -> np.ndarray:
    """Tile images in [-1, 1] (N, C, H, W) into one uint8 picture (H', W') or (H', W', 3), enlarged (nearest
    neighbour) so that each tile is at least ``min_tile`` pixels wide."""
    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    up = max(1, math.ceil(min_tile / w))
    if up > 1:
        x = x.repeat_interleave(up, 2).repeat_interleave(up, 3)
        h, w = h * up, w * up
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i]
    a = canvas.permute(1, 2, 0).numpy()
    return a[..., 0] if c == 1 else a[..., :3]


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, nrow)).save(path)
    return path


# ----------------------------------------------------------------------------------------------------- training


def build_model(cfg: GanConfig, channels: int) -> DCGAN:
    return DCGAN(cfg.image_size, channels, cfg.z_dim, cfg.g_width, cfg.d_width)


def make_optimizers(model: DCGAN, cfg: GanConfig) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    betas = (cfg.beta1, cfg.beta2)
    return (
        torch.optim.Adam(model.generator.parameters(), lr=cfg.lr_g, betas=betas),
        torch.optim.Adam(model.discriminator.parameters(), lr=cfg.lr_d, betas=betas),
    )


def translate(x: torch.Tensor, shift: int, gen: torch.Generator | None = None, fill: float = -1.0) -> torch.Tensor:
    """Each image moved by its own random (dy, dx) in [-shift, shift], the uncovered border filled with ``fill``
    (the background, -1 after scaling).  Differentiable in ``x``: gradients flow back to the moved pixels."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    d = torch.randint(-shift, shift + 1, (2, n), generator=gen).to(x.device)
    padded = F.pad(x, (shift, shift, shift, shift), value=fill)
    rows = torch.arange(h, device=x.device)[None, :] + shift - d[0][:, None]  # (n, h)
    cols = torch.arange(w, device=x.device)[None, :] + shift - d[1][:, None]  # (n, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_step(
    model: DCGAN, opt_g, opt_d, real: torch.Tensor, real_label: float = 0.9, augment: int = 0,
    gen: torch.Generator | None = None,
) -> tuple[float, float]:
    """One discriminator step and one generator step on a real batch; returns (discriminator loss, generator loss).

    ``model`` is anything with ``generator`` and ``discriminator`` (a :class:`DCGAN`, or the pair wrapped in
    DistributedDataParallel).  ``augment`` > 0 translates every image the discriminator sees, real and fake, in both
    steps, by up to that many pixels (differentiable augmentation: the generator is trained through it, so it does
    not learn the shifts)."""
    G, D0 = model.generator, model.discriminator

    def D(x):
        return D0(translate(x, augment, gen))

    n = real.shape[0]
    z = torch.randn(n, unwrap(G).z_dim, device=real.device)
    fake = G(z)
    # discriminator: real -> real_label, fake -> 0 (fakes detached: no generator gradients here).  Real and fake
    # go through in separate batches: batch norm over a mixed batch would let the discriminator tell them apart by
    # the batch statistics, which it cannot use in the generator's step.
    loss_d = F.binary_cross_entropy_with_logits(D(real), torch.full((n,), real_label, device=real.device))
    loss_d = loss_d + F.binary_cross_entropy_with_logits(D(fake.detach()), torch.zeros(n, device=real.device))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # generator: non-saturating loss, the fakes labelled real
    loss_g = F.binary_cross_entropy_with_logits(D(fake), torch.ones(n, device=real.device))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (batch-norm statistics) are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def _scorer_for(cfg: GanConfig, images, labels, state: dict | None, log: Callable[[str], None]):
    """The digits scorer: from a resumed checkpoint when it has one, else trained now (seeded)."""
    from ..metrics.gan_score import GanScorer, train_scorer, DigitScorer

    if state is not None and state.get("scorer") is not None:
        scorer = DigitScorer(images.shape[1])
        scorer.load_state_dict(state["scorer"]["model"])
        scorer.eval()
        return GanScorer(scorer, images), state["scorer"]
    t0 = time.perf_counter()
    scorer, acc = train_scorer(images, labels, seed=cfg.seed)
    info = {"model": scorer.state_dict(), "val_accuracy": acc, "train_s": time.perf_counter() - t0}
    log(f"scorer: digits classifier trained in {format_seconds(info['train_s'])}, held-out accuracy {acc:.3f}")
    return GanScorer(scorer, images), info


class Gan(Family):
    """The DCGAN on ``digits``, ``cells`` or an image folder (see the module's docstring)."""

    name = "gan"
    arch_keys = ("data", "image_size", "channels", "z_dim", "g_width", "d_width")

    def __init__(self, cfg: GanConfig):
        self.cfg = cfg
        self.untrained_score: dict | None = None
        self.real_floor: float | None = None

    def setup(self, run: Run) -> None:
        cfg, self.run = self.cfg, run
        images, labels = load_data(cfg.data, cfg.image_size, cfg.channels)
        if cfg.limit_images:
            images = images[: cfg.limit_images]
            labels = labels[: cfg.limit_images] if labels is not None else None
        channels = images.shape[1]
        cfg.channels = channels
        do_score = cfg.score if cfg.score is not None else (cfg.data == "digits")
        if do_score and labels is None:
            raise SystemExit("--score needs labelled digits (--data digits)")
        self.scorer, self.scorer_info = None, None
        if do_score and run.is_main:
            self.scorer, self.scorer_info = _scorer_for(cfg, images, labels, run.state, run.log)
            self.real_floor = self.scorer.real_floor
        seed_everything(cfg.seed)  # the networks' initial weights depend on the seed only, not on the scorer
        self.model = build_model(cfg, channels).to(run.device)
        self.optimizer, self.opt_d = make_optimizers(self.model, cfg)
        self.ema = copy.deepcopy(self.model.generator) if cfg.ema > 0 else None
        self.sampler = self.ema if self.ema is not None else self.model.generator  # samples and is scored
        self.fixed_noise = torch.randn(cfg.n_grid, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
        self.pair = types.SimpleNamespace(generator=run.wrap(self.model.generator),
                                          discriminator=run.wrap(self.model.discriminator))
        self.data = images.to(run.device)
        if len(self.data) < cfg.batch_size:
            raise SystemExit(f"--batch-size {cfg.batch_size} is larger than the data ({len(self.data)} images)")

    def describe(self) -> str:
        c = self.cfg
        return f"DCGAN on {c.data}: {len(self.data)} images of {c.channels}x{c.image_size}x{c.image_size}"

    def load_extra_state(self, state: dict) -> None:
        self.opt_d.load_state_dict(state["optimizer_d"])
        self.fixed_noise = state["fixed_noise"]
        if self.ema is not None:
            self.ema.load_state_dict(state.get("generator_ema") or self.model.generator.state_dict())

    def extra_state(self) -> dict:
        return {"optimizer_d": self.opt_d.state_dict(), "fixed_noise": self.fixed_noise, "scorer": self.scorer_info,
                "generator_ema": self.ema.state_dict() if self.ema is not None else None}

    def pack_history(self, history: list[dict]) -> dict:
        packed = {"epochs": history, "untrained_score": self.untrained_score}
        if self.real_floor is not None:
            packed["real_floor"] = self.real_floor
        return packed

    def unpack_history(self, stored) -> list[dict]:
        stored = stored or {}
        self.untrained_score = stored.get("untrained_score")
        self.real_floor = stored.get("real_floor", self.real_floor)
        return list(stored.get("epochs", []))

    def begin(self, run: Run, start_epoch: int) -> None:
        if self.scorer is not None and run.state is None:
            s = self.untrained_score = self.scorer.score_generator(self.sampler, self.cfg.score_n, seed=self.cfg.seed)
            run.log(f"untrained generator: frechet {s['frechet']:.2f}, confidence {s['confidence']:.3f}, "
                    f"classes {s['classes']}")

    def start_epoch(self, epoch: int) -> list[torch.Tensor]:
        cfg, run = self.cfg, self.run
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        # per epoch (exact on resume) and per process
        self.aug_gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch + 50021 + 7919 * run.rank)
        batches = shard(order, cfg.batch_size, run.rank, run.world_size, drop_last=True)
        self.n_batches = len(batches)
        return batches

    def step(self, epoch: int, b: int, idx: torch.Tensor) -> tuple[dict[str, float], int]:
        cfg = self.cfg
        if cfg.lr_decay > 0:  # a function of the step only: deterministic and exact on resume
            f = linear_tail(epoch * self.n_batches + b, cfg.epochs * self.n_batches, cfg.lr_decay)
            set_lr(self.optimizer, cfg.lr_g * f)
            set_lr(self.opt_d, cfg.lr_d * f)
        real = self.data[idx.to(self.run.device)]
        ld, lg = train_step(self.pair, self.optimizer, self.opt_d, real, cfg.real_label, cfg.augment, self.aug_gen)
        if self.ema is not None:
            update_ema(self.ema, self.model.generator, cfg.ema)
        return {"loss_d": ld, "loss_g": lg}, 1

    def end_epoch(self, epoch: int, rec: dict) -> None:
        run, cfg = self.run, self.cfg
        if not run.is_main:
            return
        if run.out is not None:
            self.sampler.eval()
            with torch.no_grad():
                save_grid(self.sampler(self.fixed_noise.to(run.device)), run.out / f"samples_epoch{epoch + 1:03d}.png")
            self.sampler.train()
        if self.scorer is not None:
            rec["score"] = self.scorer.score_generator(self.sampler, cfg.score_n, seed=cfg.seed)
            if self.ema is not None:
                rec["score_raw"] = self.scorer.score_generator(self.model.generator, cfg.score_n, seed=cfg.seed)

    def line(self, rec: dict) -> str:
        msg = f"loss D {rec['loss_d']:.3f} G {rec['loss_g']:.3f}"
        if "score" in rec:
            s = rec["score"]
            msg += f"; frechet {s['frechet']:.2f}, confidence {s['confidence']:.3f}, classes {s['classes']}"
            if "score_raw" in rec:
                r = rec["score_raw"]
                msg += f" (raw weights: frechet {r['frechet']:.2f}, confidence {r['confidence']:.3f})"
        return msg

    def curves(self) -> list:
        return [("loss", {"discriminator": "loss_d", "generator": "loss_g"}, False),
                ("Fréchet distance", {"samples": "score.frechet", "raw weights": "score_raw.frechet"}, True),
                ("confidence", {"samples": "score.confidence", "raw weights": "score_raw.confidence"}, False)]

    def summary(self, run: Run, history: list[dict]) -> dict:
        out: dict = {}
        if self.scorer_info is not None:
            out["scorer_val_accuracy"] = self.scorer_info["val_accuracy"]
            out["scorer_train_s"] = self.scorer_info.get("train_s")
        if self.untrained_score and history and "score" in history[-1]:
            first, last = self.untrained_score, history[-1]["score"]
            out["final"] = {
                "frechet": last["frechet"], "untrained_frechet": first["frechet"],
                "frechet_ratio": last["frechet"] / first["frechet"], "real_floor": self.real_floor,
                "confidence": last["confidence"], "classes": last["classes"], "class_counts": last["class_counts"],
            }
        return out

    def write_outputs(self, out: Path, result: dict) -> None:
        write_json(out / "summary.json", result)


def train(
    cfg: GanConfig,
    resume: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    command: str | None = None,
) -> dict:
    """Train as configured; returns the run's summary (also written to ``<out>/metrics.json`` and
    ``<out>/summary.json``)."""
    opts = LoopOptions(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device, out=cfg.out, resume=resume,
                       time_limit=cfg.time_limit or None, stop_after=cfg.stop_after,
                       progress=progress, threads=cfg.threads, command=command, log=log)
    return run(Gan(cfg), opts)


__all__ = ["GanConfig", "Gan", "load_data", "grid", "save_grid", "build_model", "make_optimizers", "train_step", "train"]
