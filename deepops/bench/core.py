"""The benchmark engine behind ``deepops bench``.

A :class:`Workload` describes one measurement (say, ReLU forward on 64x256x56x56): how to make its inputs on a
device, the implementations to compare (``deepops`` and its peers: ``torch``, ``numpy``, ``torchvision``) and the
work it does (bytes moved, floating-point operations) so that times can be set against the hardware's limits.

Timing rules (summarised for users in the README's "Benchmarks" section):

* every implementation is called once untimed first; that first call (Numba compilation, extension loading, cuDNN
  autotuning) is reported separately as ``warmup_s`` and then a few more untimed calls follow;
* repetitions are interleaved between implementations, in a shuffled order each round, so that drifts of clock or
  temperature hit all of them alike;
* each repetition uses the next of several input sets (rotation), so that no implementation is timed on data that
  the previous call left in cache;
* CUDA work is timed with CUDA events on the current stream; CPU work with ``time.perf_counter``;
* the figure reported is the median; the spread is the interquartile range relative to the median.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from typing import Any, Callable

import torch


@dataclasses.dataclass
class Workload:
    op: str  # the op family, as named on the command line: relu, conv2d, max_pool2d, nms, ...
    name: str  # the shape, human-readable
    make_inputs: Callable[[torch.device, torch.dtype, torch.Generator], Any]
    impls: dict[str, Callable[[Any], Any]]  # implementation name -> fn(inputs)
    bytes: Callable[[Any], float] | None = None  # minimal bytes moved by one call (memory-bound ops)
    flops: Callable[[Any], float] | None = None  # floating-point operations of one call (compute-bound ops)
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)
    quick: bool = True  # part of --quick
    skip: Callable[[str, str, torch.device, torch.dtype], str | None] | None = None  # reason to skip an impl
    items: Callable[[Any], float] | None = None  # items (e.g. images) one call processes: reported per second


@dataclasses.dataclass
class Result:
    op: str
    workload: str
    impl: str
    device: str
    dtype: str
    median_s: float
    iqr_rel: float
    reps: int
    warmup_s: float
    gbps: float | None = None
    tflops: float | None = None
    items_per_s: float | None = None


REGISTRY: list[Workload] = []


def register(w: Workload) -> Workload:
    REGISTRY.append(w)
    return w


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timer(device: torch.device):
    """Returns start() -> token and stop(token) -> seconds, using CUDA events on the GPU."""
    if device.type == "cuda":

        def start():
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e

        def stop(e0):
            e1 = torch.cuda.Event(enable_timing=True)
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1) / 1e3

        return start, stop
    return time.perf_counter, lambda t0: time.perf_counter() - t0


def measure(
    impls: dict[str, Callable[[Any], Any]],
    input_sets: list[Any],
    device: torch.device,
    min_reps: int = 5,
    max_reps: int = 200,
    budget_s: float = 1.0,
) -> dict[str, tuple[list[float], float]]:
    """Time each implementation: {name: (times in seconds, first-call seconds)}.

    Rounds are interleaved and shuffled; the number of rounds adapts so that the whole takes about ``budget_s``
    (at least ``min_reps`` and at most ``max_reps`` rounds).
    """
    start, stop = _timer(device)
    warm: dict[str, float] = {}
    for name, fn in impls.items():
        sync(device)
        t0 = time.perf_counter()
        fn(input_sets[0])
        sync(device)
        warm[name] = time.perf_counter() - t0
    # a few more untimed calls on every input set; they also estimate the cost of a round
    t0 = time.perf_counter()
    for fn in impls.values():
        for inputs in input_sets:
            fn(inputs)
    sync(device)
    per_round = max((time.perf_counter() - t0) / len(input_sets), 1e-6)
    reps = int(min(max_reps, max(min_reps, budget_s / per_round)))
    times: dict[str, list[float]] = {name: [] for name in impls}
    order = list(impls)
    rng = random.Random(0)
    for r in range(reps):
        rng.shuffle(order)
        inputs = input_sets[r % len(input_sets)]
        for name in order:
            tok = start()
            impls[name](inputs)
            times[name].append(stop(tok))
    return {name: (times[name], warm[name]) for name in impls}


def summarise(ts: list[float]) -> tuple[float, float]:
    med = statistics.median(ts)
    if len(ts) >= 4:
        q = statistics.quantiles(ts, n=4)
        return med, (q[2] - q[0]) / med if med > 0 else 0.0
    return med, 0.0


def copy_bandwidth(device: torch.device) -> float:
    """Measured copy bandwidth in GB/s (bytes read plus bytes written) with a large ``Tensor.copy_``."""
    n = (256 if device.type == "cuda" else 64) * 2**20 // 4
    a = torch.rand(n, device=device)
    b = torch.empty_like(a)
    res = measure({"copy": lambda _: b.copy_(a)}, [None], device, min_reps=5, max_reps=30, budget_s=0.5)
    med, _ = summarise(res["copy"][0])
    return 2 * a.numel() * a.element_size() / med / 1e9


def matmul_throughput(device: torch.device, dtype: torch.dtype) -> float:
    """Measured matrix-multiply throughput in TFLOP/s (the convolution ceiling)."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    res = measure({"mm": lambda _: a @ b}, [None], device, min_reps=3, max_reps=20, budget_s=0.5)
    med, _ = summarise(res["mm"][0])
    return 2 * n**3 / med / 1e12
