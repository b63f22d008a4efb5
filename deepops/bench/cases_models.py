"""Benchmark workloads for the classifier (``deepops bench --ops classifier``): one training step (forward,
backward, Adam update) and inference, in images per second, of deepops' LeNet-5 / AlexNet-style networks against
their ``torch.nn`` twins (``deepops.nn.convert(copy.deepcopy(model), to="torch")``: same weights, same batch).

The LeNet case is the digits training setting (1x16x16, batch 64 as ``deepops train classifier`` uses, and a
larger inference batch); the AlexNet case is the folder-of-images default (3x32x32).  The figure to read is the
speed-up column (torch.nn time / deepops time) and ``img/s`` in the last column.

``deepops bench --ops unet``: what bioimage analysts train most, a small U-Net of the StarDist / Cellpose kind
written in plain ``torch.nn`` (conv-BN-ReLU blocks, max pooling, transposed-convolution upsampling, skip
connections), run by deepops after ``deepops.nn.convert`` against itself unconverted: a training step (per-pixel
binary cross-entropy, Adam) and inference on 8x1x96x96 tiles.
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


def _train_step(impl, loss_fn=F.cross_entropy):
    def step(inputs):
        nets, x, y = inputs
        m, opt = nets[impl]
        loss = loss_fn(m(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def _infer(impl, post=lambda out: out.argmax(1)):
    def run(inputs):
        nets, x, _ = inputs
        with torch.inference_mode():
            return post(nets[impl][0](x))

    return run


class UNet(torch.nn.Module):
    """A plain torch.nn U-Net: two conv-BN-ReLU per level, 2x2 max pooling down, 2x2 stride-2 transposed
    convolutions up, skips concatenated, a 1x1 convolution to one logit per pixel."""

    def __init__(self, ch: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()

        def block(cin, cout):
            return torch.nn.Sequential(
                torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
                torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(),
            )

        self.down = torch.nn.ModuleList()
        cin = ch
        for wd in widths:
            self.down.append(block(cin, wd))
            cin = wd
        self.pool = torch.nn.MaxPool2d(2)
        self.up = torch.nn.ModuleList(torch.nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = torch.nn.ModuleList(block(w, w // 2) for w in widths[:0:-1])
        self.head = torch.nn.Conv2d(widths[0], 1, 1)

    def forward(self, x):
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            x = merge(torch.cat([up(x), skip], 1))
        return self.head(x)


def _unet_maker(batch, size, train):
    def make(device, dtype, gen):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
        plain = UNet().to(device=device, dtype=dtype)
        nets = {}
        for impl, m in (("deepops", dnn.convert(plain)), ("torch", plain)):  # shared parameters
            m.train(train)
            nets[impl] = (m, torch.optim.Adam(m.parameters(), lr=1e-3) if train else None)
        x = torch.randn(batch, 1, size, size, generator=gen).to(device=device, dtype=dtype)
        target = (torch.rand(batch, 1, size, size, generator=gen) > 0.7).to(device=device, dtype=dtype)
        return nets, x, target

    return make


for train in (True, False):
    register(
        Workload(
            op="unet",
            name=f"unet {'train step' if train else 'inference'} 8x1x96x96",
            make_inputs=_unet_maker(8, 96, train),
            impls={
                impl: _train_step(impl, F.binary_cross_entropy_with_logits) if train else _infer(impl, lambda out: out)
                for impl in ("deepops", "torch")
            },
            items=lambda i: i[1].shape[0],
            quick=False,
        )
    )

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
