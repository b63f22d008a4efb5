"""The one training loop of ``deepops train classifier|detector|gan``, and its command-line options.

A model family (``deepops.train.classifier``, ``deepops.train.detector``, ``deepops.train.gan``) is a
:class:`Family`: it builds its data, networks and optimisers, says what an epoch's batches are and what one
optimisation step does, and what happens after an epoch (validation, sample images) and at the end (a test
evaluation).  :func:`run` does everything else, the same way for the three:

* **devices and torchrun**: ``--device`` (default: the GPU if there is one).  Started by ``torchrun``, every process
  joins the process group (gloo on the CPU, NCCL on GPUs), the family wraps its networks with :meth:`Run.wrap`
  (DistributedDataParallel) and each process trains on its own part of every global batch (:func:`shard`; the
  global batch is ``--batch-size``, split among the processes).  Only rank 0 prints and writes files.
* **seeding**: every process seeds Python, NumPy and torch with ``--seed`` before the family builds its networks,
  so they start identical; then every process but rank 0 reseeds with its rank (its own noise and dropout).  Rank 0
  keeps the seeded stream, so a run on one process is exactly a run without torchrun.
* **progress**: a tqdm bar per epoch (``tqdm.auto``: a widget in Jupyter; in a terminal a bar on stderr; nothing
  when stderr is not a terminal, so logs stay clean; ``--no-progress``: never) and one line per epoch on stdout.
* **checkpoints**: ``last.pt`` after every epoch (the networks, the optimisers, the epoch, the config, the history
  and the RNG states, ``deepops.train.common.save_checkpoint``); ``--resume last.pt`` continues from it: the same
  weights, optimiser states, RNG states and history, so an interrupted run resumed gives the run that was not
  interrupted.  Settings that shape the networks (``Family.arch_keys``) are taken from the checkpoint.
* **results**: ``metrics.json`` (the config, the history, the family's summary and how the run went: training time,
  CPU time, epochs, processes, machine load) after every epoch and at the end; ``curves.png`` at the end.
* **time**: ``--time-limit`` (seconds of training, or with a unit: ``90s``, ``14m``, ``1.5h``; 0: none) stops before
  an epoch that, at the pace of the last one, would end past the limit; ``--stop-after N`` stops after N epochs of
  this call (a time slot: ``--resume`` continues the same schedule).  Families whose learning rate follows the time
  ask :meth:`Run.elapsed`.

With ``DEEPOPS_DUMP_WEIGHTS=DIR`` in the environment every process also writes ``DIR/rank<N>.pt``: its final
parameters and a digest of the batches it trained on (the distributed tests compare them across processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._report import format_seconds, write_json
from . import common as C

DUMP_ENV = "DEEPOPS_DUMP_WEIGHTS"


@dataclasses.dataclass
class LoopOptions:
    """The settings every family's run takes (the command line's ``--epochs``, ``--seed``, ...)."""

    epochs: int = 1
    seed: int = 0
    device: str | None = None  # None: the GPU if there is one
    out: str | None = None  # None: write no files
    resume: str | None = None  # a last.pt to continue from
    time_limit: float | None = None  # seconds of training (None or 0: no limit)
    stop_after: int | None = None  # epochs of this call
    progress: bool | None = None  # None: tqdm's choice (a bar on a terminal or in a notebook)
    threads: int | None = None  # torch CPU threads per process (None: as they are)
    command: str | None = None  # the command line, recorded in metrics.json
    log: Callable[[str], None] = print


class Family:
    """What a model family plugs into :func:`run`.  ``setup`` must set ``model`` (every trained network: it is the
    checkpoint's ``model``) and ``optimizer`` (the checkpoint's ``optimizer``; others go in :meth:`extra_state`)."""

    name = "model"
    #: settings a resumed run takes from its checkpoint's config (the networks' shapes); attributes of ``self.cfg``
    arch_keys: tuple[str, ...] = ()

    cfg: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer | None = None

    def setup(self, run: "Run") -> None:
        """Data, networks (wrapped with ``run.wrap``), optimisers.  Called once the processes are seeded."""
        raise NotImplementedError

    def config(self) -> dict:
        """The JSON-able settings stored in checkpoints and metrics.json."""
        return dataclasses.asdict(self.cfg)

    def adopt(self, saved: dict, log: Callable[[str], None]) -> None:
        """On resume, before ``setup``: take :attr:`arch_keys` from the checkpoint's config."""
        for k in self.arch_keys:
            if k in saved and saved[k] != getattr(self.cfg, k):
                if getattr(self.cfg, k) is not None:
                    log(f"resume: using the checkpoint's {k}={saved[k]!r}")
                setattr(self.cfg, k, saved[k])

    def describe(self) -> str:
        return self.name

    def begin(self, run: "Run", start_epoch: int) -> None:
        """After setup and resume, before the first epoch of this call."""

    def start_epoch(self, epoch: int) -> Sequence:
        """Set what depends on the epoch (learning rate, seeds); return its batches (a sized iterable)."""
        raise NotImplementedError

    def step(self, epoch: int, i: int, batch: Any) -> tuple[dict[str, float], int]:
        """One optimisation step on ``batch``: (totals to average over the epoch, the count they are totals of)."""
        raise NotImplementedError

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else float("nan")

    def end_epoch(self, epoch: int, rec: dict) -> None:
        """After an epoch's steps: add validation numbers etc. to ``rec`` (every process calls it)."""

    def line(self, rec: dict) -> str:
        """The numbers of an epoch's log line."""
        skip = {"epoch", "steps", "seconds", "cpu_seconds", "elapsed_s"}
        return "  ".join(f"{k} {v:.4g}" for k, v in rec.items() if k not in skip and isinstance(v, (int, float)))

    def curves(self) -> list[tuple[str, dict[str, str], bool]]:
        """curves.png: one panel per (y label, {legend: history key, "a.b" for rec["a"]["b"]}, log scale)."""
        return []

    def extra_state(self) -> dict:
        """More checkpoint entries (other optimisers, weight averages, ...)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def pack_history(self, history: list[dict]) -> Any:
        """The history as stored in checkpoints and metrics.json."""
        return history

    def unpack_history(self, stored: Any) -> list[dict]:
        return list(stored or [])

    def summary(self, run: "Run", history: list[dict]) -> dict:
        """Entries of metrics.json after training (every process calls it: a test evaluation may be shared)."""
        return {}

    def write_outputs(self, out: Path, result: dict) -> None:
        """More files at the end (rank 0)."""


# ----------------------------------------------------------------------------------------------------- the loop


def run(family: Family, opts: LoopOptions) -> dict:
    """Train ``family`` as ``opts`` say; returns what metrics.json holds."""
    if opts.epochs < 1:
        raise SystemExit(f"deepops train {family.name}: '--epochs' must be at least 1")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    dist = C.setup_distributed(opts.device)
    try:
        result = Run(family, opts, dist).execute()
    except BaseException:
        C.cleanup_distributed(dist, wait_for_all=False)
        raise
    C.cleanup_distributed(dist)
    return result


class Run:
    """One run of the loop: what a family sees of it (devices, processes, DDP wrapping, the elapsed time)."""

    def __init__(self, family: Family, opts: LoopOptions, dist: C.Dist):
        self.family, self.opts, self.dist = family, opts, dist
        self.out = Path(opts.out) if opts.out else None
        self.state: dict | None = None  # the checkpoint resumed from
        self._elapsed = 0.0  # seconds of training in finished epochs
        self._epoch_t0: float | None = None
        self._digest = 0.0

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def epochs(self) -> int:
        return self.opts.epochs

    def log(self, text: str) -> None:
        if self.is_main:
            self.opts.log(text)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel under torchrun (itself otherwise): call it for the training steps."""
        return C.wrap_ddp(module, self.dist)

    def batch_per_process(self, batch_size: int) -> int:
        """This process's part of a global batch (the global batch rounded down to a multiple of the processes)."""
        return max(batch_size // self.world_size, 1)

    def elapsed(self) -> float:
        """Seconds of training so far, this epoch's included; under torchrun the largest over the processes (a
        collective call: every process must make it at the same point)."""
        t = self._elapsed + (time.perf_counter() - self._epoch_t0 if self._epoch_t0 is not None else 0.0)
        return C.all_reduce(torch.tensor([t], dtype=torch.float64), self.dist, "max").item()

    def execute(self) -> dict:
        fam, o = self.family, self.opts
        if o.resume:
            self.state = C.load_checkpoint(o.resume)
            fam.adopt(self.state["config"], self.log)
        if self.out is not None and self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        load_start = os.getloadavg()
        C.seed_everything(o.seed)  # every process: the networks start identical
        fam.setup(self)
        start, history = self._restore()
        if self.rank > 0:  # its own random stream from here on (rank 0 keeps the seeded one)
            C.seed_everything(rank_seed(o.seed, self.rank, start))
        config = fam.config() | {"world_size": self.world_size}
        n_params = sum(p.numel() for p in fam.model.parameters())
        self.log(f"{fam.describe()}; {n_params} parameters, {self.world_size} process(es) on {self.device}")
        fam.begin(self, start)
        self._elapsed = sum(_seconds(h) for h in history)
        end = o.epochs if o.stop_after is None else min(o.epochs, start + o.stop_after)
        trained = 0
        for epoch in range(start, end):
            if self._out_of_time(history):
                self.log(f"time limit {format_seconds(o.time_limit)}: stopping after {epoch} epochs "
                         f"(the next would end at about {format_seconds(self._elapsed + _seconds(history[-1]))})")
                break
            history.append(self._epoch(epoch))
            trained += 1
            if self.is_main:
                rec = history[-1]
                self.log(f"epoch {epoch + 1:3d}/{o.epochs}  {fam.line(rec)}  {format_seconds(rec['seconds'])}")
                if self.out is not None:
                    self._save(epoch + 1, config, history)
                    write_json(self.out / "metrics.json", self._result(config, history, {}, load_start))
        result = self._result(config, history, fam.summary(self, history), load_start)
        self.log(f"{len(history)} epochs trained in {format_seconds(result['train_s'])} (CPU time of this process "
                 f"{format_seconds(result['train_cpu_s'])})" + (f"; results in {self.out}" if self.out else ""))
        if self.is_main and self.out is not None:
            if trained == 0 and not (self.out / "last.pt").exists():  # resumed a finished run into a new folder
                self._save(len(history), config, history)
            write_json(self.out / "metrics.json", result)
            plot_curves(history, fam.curves(), self.out / "curves.png")
            fam.write_outputs(self.out, result)
        if os.environ.get(DUMP_ENV):
            self._dump(Path(os.environ[DUMP_ENV]))
        return result

    # -------------------------------------------------------------------------------------------------- pieces

    def _restore(self) -> tuple[int, list[dict]]:
        fam, st = self.family, self.state
        if st is None:
            return 0, []
        fam.model.load_state_dict(st["model"])
        if fam.optimizer is not None and st.get("optimizer") is not None:
            fam.optimizer.load_state_dict(st["optimizer"])
        fam.load_extra_state(st)
        history = fam.unpack_history(st.get("metrics"))
        if st.get("rng"):
            C.set_rng_state(st["rng"])
        return int(st["epoch"]), history

    def _out_of_time(self, history: list[dict]) -> bool:
        limit = self.opts.time_limit
        if not limit or not history:
            return False
        late = float(self._elapsed + _seconds(history[-1]) > limit)
        return C.all_reduce(torch.tensor([late]), self.dist, "max").item() > 0  # the processes stop together

    def _epoch(self, epoch: int) -> dict:
        fam, o = self.family, self.opts
        batches = fam.start_epoch(epoch)
        fam.model.train()
        from tqdm.auto import tqdm

        disable = True if not self.is_main else (None if o.progress is None else not o.progress)
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{o.epochs}", disable=disable, leave=False,
                   dynamic_ncols=True)
        sums: dict[str, float] = {}
        count = steps = 0
        dump = bool(os.environ.get(DUMP_ENV))
        self._epoch_t0, c0 = time.perf_counter(), time.process_time()
        for i, batch in enumerate(batches):
            totals, n = fam.step(epoch, i, batch)
            for k, v in totals.items():
                sums[k] = sums.get(k, 0.0) + v
            count, steps = count + n, steps + 1
            if dump:
                self._digest += _digest(batch)
            bar.update(1)
            if not bar.disable:
                bar.set_postfix_str("  ".join(f"{k} {v / count:.4f}" for k, v in sums.items()), refresh=False)
        bar.close()
        seconds, cpu = time.perf_counter() - self._epoch_t0, time.process_time() - c0
        self._epoch_t0 = None
        self._elapsed += seconds
        rec = {"epoch": epoch + 1, "steps": steps, **self._means(sums, count), "lr": fam.lr(), "seconds": seconds,
               "cpu_seconds": cpu, "elapsed_s": self._elapsed}
        fam.end_epoch(epoch, rec)
        return rec

    def _means(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """The epoch's averages over every process: the totals and counts are summed first."""
        keys = list(sums)
        t = C.all_reduce(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64), self.dist, "sum")
        return {k: t[i].item() / max(t[-1].item(), 1) for i, k in enumerate(keys)}

    def _save(self, epoch: int, config: dict, history: list[dict]) -> None:
        fam = self.family
        C.save_checkpoint(self.out / "last.pt", fam.model, fam.optimizer, epoch, config, fam.pack_history(history),
                          **fam.extra_state())

    def _result(self, config: dict, history: list[dict], summary: dict, load_start) -> dict:
        train_s = sum(_seconds(h) for h in history)
        return {
            "config": config,
            "history": self.family.pack_history(history),
            "train_s": train_s,
            "train_cpu_s": sum(h.get("cpu_seconds", 0.0) for h in history),
            "epochs_done": len(history),
            "world_size": self.world_size,
            "command": self.opts.command,
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            **summary,
        }

    def _dump(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        params = {k: v.detach().cpu().clone() for k, v in self.family.model.named_parameters()}
        torch.save({"rank": self.rank, "params": params, "data_digest": self._digest}, folder / f"rank{self.rank}.pt")


def _seconds(rec: dict) -> float:
    """An epoch's training seconds (``train_s`` / ``epoch_s``: the names in checkpoints of older versions)."""
    return rec.get("seconds", rec.get("train_s", rec.get("epoch_s", 0.0)))


def _digest(batch: Any) -> float:
    if torch.is_tensor(batch):
        return float(batch.double().sum()) + 1e-3 * float(batch.double().flatten()[:64].sum())
    if isinstance(batch, (tuple, list)):
        return sum(_digest(b) for b in batch)
    return 0.0


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of process ``rank`` (> 0) when it starts (or resumes) at ``epoch``."""
    return int(np.random.SeedSequence([seed % 2**32, rank, epoch]).generate_state(1)[0])


def shard(order: torch.Tensor, batch_size: int, rank: int, world_size: int, drop_last: bool) -> list[torch.Tensor]:
    """This process's batches of an epoch whose samples come in ``order``.

    Global batch ``b`` is ``order[b * B : (b + 1) * B]`` with ``B`` the global batch rounded down to a multiple of the
    processes; process ``r`` takes its positions ``r, r + world_size, ...``.  ``drop_last``: an incomplete last
    global batch is dropped; otherwise the order is first padded to a multiple of the processes by repeating its
    start, so that every process has a share of every batch.  One process: ``order`` cut into batches of
    ``batch_size``."""
    per = max(batch_size // world_size, 1)
    size = per * world_size
    if drop_last:
        n_batches = len(order) // size
    else:
        if len(order) % world_size:
            order = torch.cat([order, order[: world_size - len(order) % world_size]])
        n_batches = math.ceil(len(order) / size)
    return [order[b * size : (b + 1) * size][rank::world_size] for b in range(n_batches)]


# --------------------------------------------------------------------------------------------------------- plots


def plot_curves(history: list[dict], panels: list[tuple[str, dict[str, str], bool]], path: Path) -> bool:
    """curves.png: one panel per (y label, {legend: key}, log scale), against the epoch; False without matplotlib
    or without anything to draw."""
    panels = [(label, {n: k for n, k in keys.items() if any(_get(h, k) is not None for h in history)}, log)
              for label, keys, log in panels]
    panels = [p for p in panels if p[1]]
    if not panels or not history:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (label, keys, log) in zip(axes[0], panels):
        for name, key in keys.items():
            pts = [(h["epoch"], _get(h, key)) for h in history if _get(h, key) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
        ax.set_xlabel("epoch"), ax.set_ylabel(label)
        if log and all(v > 0 for line in ax.get_lines() for v in line.get_ydata()):
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _get(rec: dict, key: str):
    for part in key.split("."):
        if not isinstance(rec, dict) or part not in rec:
            return None
        rec = rec[part]
    return rec if isinstance(rec, (int, float)) and not (isinstance(rec, float) and math.isnan(rec)) else None


# -------------------------------------------------------------------------------------------------- command line


def add_loop_arguments(p: argparse.ArgumentParser, *, epochs: int, out: str) -> None:
    """The options every ``deepops train`` command has (their meaning is :class:`LoopOptions`')."""
    p.add_argument("--epochs", type=int, default=epochs, help="total epochs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order, noise (default %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    p.add_argument("--out", default=out, help="folder for last.pt, metrics.json, curves.png, ... (default %(default)s)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from a last.pt (the schedule follows the new --epochs)")
    p.add_argument("--time-limit", type=duration, default=None, metavar="DURATION",
                   help="training-time budget: stop before an epoch that would end past it; a number is seconds, "
                        "or give a unit: 90s, 14m, 1.5h (0: no limit)")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop after N epochs of this call (a time slot); --resume continues the schedule")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def loop_arguments(args: argparse.Namespace) -> dict:
    """The :func:`add_loop_arguments` options of parsed ``args``, as :class:`LoopOptions` fields (``time_limit`` in
    seconds, ``progress`` None or False)."""
    return {
        "epochs": args.epochs, "seed": args.seed, "device": args.device, "out": args.out, "resume": args.resume,
        "time_limit": args.time_limit or None, "stop_after": args.stop_after, "threads": args.threads,
        "progress": False if args.no_progress else None,
    }


def command_line(args: argparse.Namespace) -> str:
    """The command being run (``deepops train ...``), from the arguments ``deepops.cli.main`` parsed."""
    return "deepops " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])


_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """A ``--time-limit`` in seconds: a number of seconds, or a number with a unit (``90s``, ``14m``, ``1.5h``)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not m or m.group(2) not in _UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 600, 90s, 14m, 1.5h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


__all__ = ["LoopOptions", "Family", "Run", "run", "shard", "rank_seed", "plot_curves", "add_loop_arguments",
           "loop_arguments", "command_line"]
