"""Benchmark workloads for the cell detector: one training step and inference, deepops vs the network's ``torch.nn``
twin (``deepops.nn.convert(copy.deepcopy(model), to="torch")``: same weights), on every backend present.

* ``detector train step``: forward, CenterNet loss, backward and an Adam step on a batch of 16 SIMCEP-like images of
  128 x 128 (the training recipe of ``deepops train detector``);
* ``detector inference``: the forward pass on 16 images of 224 x 224 (the evaluation images); throughput in images
  per second is 16 / median time.
FLOPs are the convolutions' multiply-adds x 2 (x 3 for a training step: forward, input and weight gradients).
"""

from __future__ import annotations

import copy

import torch

from ..detection.data import SyntheticBatches, detector_loss
from ..models.detector import CellDetector
from ..nn import convert
from .core import Workload, register

BATCH = 16


def _conv_flops(model: torch.nn.Module, h: int, w: int) -> float:
    total, scale = 0.0, 1
    for m in model.modules():
        if isinstance(m, torch.nn.MaxPool2d):
            scale *= 2
        elif isinstance(m, torch.nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += 2.0 * m.in_channels * m.out_channels * k * (h // scale) * (w // scale)
    return total


def _maker(size: int, train: bool):
    def make(device, dtype, gen):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        x, heat, reg, mask = SyntheticBatches(["easy", "crowded"], BATCH, seed, size=size).batch(0)
        torch.manual_seed(seed)
        ours = CellDetector(16).to(device)
        peer = convert(copy.deepcopy(ours), to="torch")
        nets = {"deepops": ours, "torch": peer}
        opts = {k: torch.optim.Adam(n.parameters(), lr=1e-4) for k, n in nets.items()} if train else {}
        if not train:
            for n in nets.values():
                n.eval()
        return [t.to(device) for t in (x, heat, reg, mask)], nets, opts

    return make


def _train_step(name):
    def step(inputs):
        (x, heat, reg, mask), nets, opts = inputs
        loss = detector_loss(nets[name](x), heat, reg, mask)["loss"]
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()

    return step


def _infer(name):
    def run(inputs):
        with torch.no_grad():
            return inputs[1][name](inputs[0][0])

    return run


_flop_net = CellDetector(16)  # its layers are torch.nn subclasses: _conv_flops counts them
register(
    Workload(
        op="detector",
        name=f"detector train step {BATCH}x1x128x128",
        make_inputs=_maker(128, True),
        impls={"deepops": _train_step("deepops"), "torch": _train_step("torch")},
        flops=lambda i: 3 * BATCH * _conv_flops(_flop_net, 128, 128),
        quick=False,  # seconds per call on a CPU: run with `deepops bench --ops detector`
    )
)
register(
    Workload(
        op="detector",
        name=f"detector inference {BATCH}x1x224x224",
        make_inputs=_maker(224, False),
        impls={"deepops": _infer("deepops"), "torch": _infer("torch")},
        flops=lambda i: BATCH * _conv_flops(_flop_net, 224, 224),
        quick=False,
    )
)
