"""The building blocks of the training loop (``deepops.train.loop``): seeding, devices, torchrun/DDP, all-reduce,
checkpoints.

Checkpoints are plain ``torch.save`` dictionaries: ``model`` (state_dict, never the DDP wrapper's keys),
``optimizer``, ``epoch`` (epochs completed), ``config`` (the run's settings, JSON-able), ``metrics`` (history),
the RNG states and whatever else the family stores, so a resumed run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:1`` or None (the GPU if there is one); a clear error for an unusable choice."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but no CUDA GPU is visible to PyTorch")
    return dev


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None) -> Dist:
    """Join the process group when started by ``torchrun`` (gloo on the CPU, nccl on GPUs); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=resolve_device(device))
    import torch.distributed as tdist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed(dist: Dist, wait_for_all: bool = True) -> None:
    """Leave the process group.  After a run that ended normally every process first waits for the others
    (``wait_for_all``): a gloo process torn down while another still talks to it can abort ("terminate called
    without an active exception", seen on a loaded 2-core machine); after an error it does not wait (the others may
    never arrive; torchrun stops them)."""
    if dist.enabled:
        import torch.distributed as tdist

        if tdist.is_initialized():
            if wait_for_all:
                tdist.barrier()
            tdist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP (or torch.compile) wrapper, whose state_dict keys are the plain ones."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model


def all_reduce(t: torch.Tensor, dist: Dist, op: str = "sum") -> torch.Tensor:
    """``t`` summed (``op="sum"``) or maximised (``"max"``) over all processes; ``t`` itself with one process.  The
    result is on ``t``'s device (the reduction runs on the process's device, as NCCL needs)."""
    if not dist.enabled:
        return t
    import torch.distributed as tdist

    buf = t.to(dist.device, copy=True)
    tdist.all_reduce(buf, op={"sum": tdist.ReduceOp.SUM, "max": tdist.ReduceOp.MAX}[op])
    return buf.to(t.device)


def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    epoch: int,
    config: dict,
    metrics: Any = None,
    **extra: Any,
) -> None:
    """Write a checkpoint atomically (a crash mid-write never leaves a truncated file behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch,
        "config": config,
        "metrics": metrics,
        "rng": rng_state(),
        **extra,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (a clear error if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise SystemExit(f"{path} is not a deepops checkpoint (no 'model'/'config' entries)")
    return state
