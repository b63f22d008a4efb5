"""Benchmark workloads for the DCGAN (``deepops.models.gan``): a whole training step (discriminator step and
generator step, with Adam) and generator inference, deepops' layers against the network's ``torch.nn`` twin
(``deepops.nn.convert(copy.deepcopy(model), to="torch")``: same weights).  Whole-network workloads: images per
second = batch / time.
"""

from __future__ import annotations

import copy

import torch

from .core import Workload, register

CASES = [  # (image side, channels, batch for the training step, batch for inference, in --quick)
    (16, 1, 64, 256, True),
    (32, 1, 64, 256, False),
    (64, 3, 32, 64, False),
]
WIDTH = 32  # generator and discriminator widths
Z_DIM = 32


def _pair(size, channels, device):
    """The deepops network and its torch.nn twin with the same weights, each with its Adam optimisers."""
    from ..models.gan import DCGAN
    from ..nn import convert
    from ..train.gan import GanConfig, make_optimizers

    cfg = GanConfig(image_size=size, z_dim=Z_DIM, g_width=WIDTH, d_width=WIDTH)
    ours = DCGAN(size, channels, Z_DIM, WIDTH, WIDTH).to(device)
    ref = convert(copy.deepcopy(ours), to="torch")
    return {"deepops": (ours, *make_optimizers(ours, cfg)), "torch": (ref, *make_optimizers(ref, cfg))}


def _train_maker(size, channels, batch):
    def make(device, dtype, gen):
        real = (torch.rand(batch, channels, size, size, generator=gen) * 2 - 1).to(device)
        return real, _pair(size, channels, device)

    return make


def _infer_maker(size, channels, batch):
    def make(device, dtype, gen):
        z = torch.randn(batch, Z_DIM, generator=gen).to(device)
        nets = {k: v[0].generator.eval() for k, v in _pair(size, channels, device).items()}
        return z, nets

    return make


def _step(name):
    from ..train.gan import train_step

    def run(inputs):
        real, nets = inputs
        model, opt_g, opt_d = nets[name]
        return train_step(model, opt_g, opt_d, real)

    return run


def _infer(name):
    def run(inputs):
        z, nets = inputs
        with torch.no_grad():
            return nets[name](z)

    return run


for size, ch, tb, ib, quick in CASES:
    register(
        Workload(
            op="gan",
            name=f"dcgan train step {size}px c{ch} b{tb}",
            make_inputs=_train_maker(size, ch, tb),
            impls={"deepops": _step("deepops"), "torch": _step("torch")},
            quick=quick,
        )
    )
    register(
        Workload(
            op="gan",
            name=f"dcgan generate {size}px c{ch} b{ib}",
            make_inputs=_infer_maker(size, ch, ib),
            impls={"deepops": _infer("deepops"), "torch": _infer("torch")},
            quick=quick,
        )
    )
