"""A tiny mini-batch training helper shared by the examples (the command line's loop is ``deepops.train.loop``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import data as D
from ..train.schedule import cosine, set_lr


def fit(model, x, y, epochs: int, lr: float = 2e-3, batch: int = 32, params=None, seed: int = 0, augment: bool = True,
        background: float = 0.0) -> None:
    """Adam with cosine decay over ``epochs`` passes, mini-batches of ``batch``, optional augmentation."""
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    steps, step = epochs * max(1, -(-len(y) // batch)), 0
    gen = torch.Generator().manual_seed(seed)
    aug = D.Augment() if augment else None
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            j = order[i : i + batch]
            xb = aug(x[j], gen, background) if aug is not None else x[j]
            loss = F.cross_entropy(model(xb), y[j])
            set_lr(opt, cosine(step / steps, lr))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    model.eval()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()
