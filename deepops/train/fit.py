"""The small supervised loop that helpers train with in one call: the examples' classifiers and the GAN scorer.

Not the command line's loop (``deepops.train.loop``, with checkpoints, DDP and progress): this one trains a model
on tensors in memory for a few epochs, deterministically from ``gen``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .schedule import cosine, set_lr


def fit(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch: int,
    lr: float,
    gen: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Cross-entropy on mini-batches of ``batch`` drawn without replacement (a new order from ``gen`` each epoch),
    the learning rate falling along a cosine from ``lr`` to 0 over all steps; ``augment`` maps an input batch to
    the batch trained on.  Leaves the model in eval mode."""
    steps, step = epochs * max(1, -(-len(y) // batch)), 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            j = order[i : i + batch]
            loss = F.cross_entropy(model(augment(x[j]) if augment is not None else x[j]), y[j])
            set_lr(optimizer, cosine(step / steps, lr))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    model.eval()
