"""A tiny mini-batch training helper shared by the examples (the command line's loop is ``deepops.train.loop``)."""

from __future__ import annotations

import torch

from .. import data as D
from ..train.fit import fit as train_fit


def fit(model, x, y, epochs: int, lr: float = 2e-3, batch: int = 32, params=None, seed: int = 0, augment: bool = True,
        background: float = 0.0) -> None:
    """Adam with cosine decay over ``epochs`` passes, mini-batches of ``batch``, optional augmentation."""
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    aug = D.Augment() if augment else None
    train_fit(model, x, y, opt, epochs=epochs, batch=batch, lr=lr, gen=gen,
              augment=None if aug is None else (lambda b: aug(b, gen, background)))


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()
