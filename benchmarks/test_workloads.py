"""pytest-benchmark suites over the same workloads as ``deepops bench`` (run with ``pytest benchmarks``).

Every registered workload becomes one benchmark per implementation and device, grouped so that pytest-benchmark's
table sets deepops beside its peers.  Select workloads with ``-k``, e.g. ``pytest benchmarks -k relu``.
"""

from __future__ import annotations

import pytest
import torch

from deepops.bench import core, runner

runner.load_cases()

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = [
    pytest.param(w, impl, dev, id=f"{w.name}-{dev}-{impl}".replace(" ", "_"))
    for w in core.REGISTRY
    for dev in DEVICES
    if dev in w.devices
    for impl in w.impls
]


@pytest.mark.parametrize("workload,impl,device", CASES)
def test_workload(benchmark, workload, impl, device):
    dev = torch.device(device)
    dtype = workload.dtypes[0]
    if workload.skip and workload.skip(workload.name, impl, dev, dtype):
        pytest.skip("implementation not available for this case")
    inputs = workload.make_inputs(dev, dtype, torch.Generator().manual_seed(0))
    fn = workload.impls[impl]
    fn(inputs)  # warm-up (JIT compilation, autotuning)
    benchmark.group = f"{workload.name} [{device}]"

    def call():
        fn(inputs)
        core.sync(dev)

    benchmark(call)
