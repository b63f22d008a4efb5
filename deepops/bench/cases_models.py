"""Benchmark workloads for the classifier (``deepops bench --ops classifier``): one training step (forward,
backward, Adam update) and inference, in images per second, of deepops' LeNet-5 / AlexNet-style networks against
their ``torch.nn`` twins (``deepops.nn.convert(copy.deepcopy(model), to="torch")``: same weights, same batch).

The LeNet case is the digits training setting (1x16x16, batch 64 as ``deepops train classifier`` uses, and a
larger inference batch); the AlexNet case is the folder-of-images default (3x32x32).  The figure to read is the
speed-up column (torch.nn time / deepops time) and ``img/s`` in the last column.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .. import models as M
from .. import nn as dnn
from .core import Workload, register

CASES = [
    # (model, channels, size, train batch, inference batch, part of --quick)
    ("lenet", 1, 16, 64, 256, True),
    ("alexnet", 3, 32, 64, 256, False),
]


def _maker(name, ch, size, batch, train):
    def make(device, dtype, gen):
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        torch.manual_seed(seed)
        ours = M.build(name, ch, 10, size).to(device=device, dtype=dtype)
        nets = {}
        for impl, m in (("deepops", ours), ("torch", dnn.convert(copy.deepcopy(ours), to="torch"))):
            m.train(train)
            opt = torch.optim.Adam(m.parameters(), lr=1e-3) if train else None
            nets[impl] = (m, opt)
        x = torch.randn(batch, ch, size, size, generator=gen).to(device=device, dtype=dtype)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        return nets, x, y

    return make


def _train_step(impl):
    def step(inputs):
        nets, x, y = inputs
        m, opt = nets[impl]
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def _infer(impl):
    def run(inputs):
        nets, x, _ = inputs
        with torch.inference_mode():
            return nets[impl][0](x).argmax(1)

    return run


for name, ch, size, tb, ib, quick in CASES:
    shape = f"{ch}x{size}x{size}"
    register(
        Workload(
            op="classifier",
            name=f"{name} train step {tb}x{shape}",
            make_inputs=_maker(name, ch, size, tb, True),
            impls={"deepops": _train_step("deepops"), "torch": _train_step("torch")},
            items=lambda i: i[1].shape[0],
            quick=quick,
        )
    )
    register(
        Workload(
            op="classifier",
            name=f"{name} inference {ib}x{shape}",
            make_inputs=_maker(name, ch, size, ib, False),
            impls={"deepops": _infer("deepops"), "torch": _infer("torch")},
            items=lambda i: i[1].shape[0],
            quick=quick,
        )
    )
