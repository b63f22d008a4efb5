"""Reliability of every op (see op_cases.py): flat memory over many calls, no reference cycles from the autograd
glue, the same results from several threads at once, identical results run to run, and CUDA's current stream."""

from __future__ import annotations

import gc
import os
import threading

import pytest
import torch

from conftest import DEVICES, cuda
from op_cases import CASES

NAMES = sorted(CASES)
CALLS = int(os.environ.get("DEEPOPS_MEMORY_CALLS", "10000"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) or (x.isnan() == y.isnan()).all() and torch.equal(
        torch.nan_to_num(x), torch.nan_to_num(y)) for x, y in zip(a, b))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("name", NAMES)
def test_cpu_memory_is_flat(name):
    run = CASES[name]("cpu")
    for _ in range(200):  # warm-up: JIT, allocator pools, caches
        run()
    half = CALLS // 2
    for _ in range(half):  # the allocators settle in the first half
        run()
    gc.collect()
    before = _rss_bytes()
    for _ in range(CALLS - half):
        run()
    gc.collect()
    grown = _rss_bytes() - before
    # a leak grows linearly: even 200 bytes a call is 1 MiB over the second half; allocator noise is far less
    assert grown < 2**20, f"resident memory grew by {grown / 2**10:.0f} KiB over the last {CALLS - half} calls of {name}"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_cuda_memory_is_flat(name):
    run = CASES[name]("cuda")
    for _ in range(50):
        run()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(CALLS):
        run()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_no_reference_cycles(name, device):
    run = CASES[name](device)
    run()
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            run()
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0, f"{name}: {found} objects were only reclaimable by the cycle collector"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_threads_give_the_same_results(name, device):
    run = CASES[name](device)
    want = run()
    errors: list[str] = []

    def worker():
        for _ in range(10):
            if not _equal(run(), want):
                errors.append("mismatch")
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name, device):
    run = CASES[name](device)
    first = run()
    for _ in range(3):
        assert _equal(run(), first)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_cuda_respects_current_stream(name):
    run = CASES[name]("cuda")
    want = run()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        # a long kernel on the side stream first: work launched on the default stream instead would overtake it
        torch.cuda._sleep(10_000_000)
        got = run()
    s.synchronize()
    assert _equal(got, want)
