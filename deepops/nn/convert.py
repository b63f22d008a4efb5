"""``deepops.nn.convert``: swap a model's torch.nn layers for their deepops twins, or back.

``convert(model)`` (``to="deepops"``): every ``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.MaxPool2d``, ``nn.ReLU`` and
``nn.LeakyReLU`` (exactly those classes, not user subclasses with their own ``forward``) becomes the deepops layer of
the same configuration.  ``convert(model, to="torch")`` is the other direction: every deepops layer becomes the
``torch.nn`` layer it derives from -- the way to build a model's PyTorch twin (the reference that tests and
``deepops bench`` compare against, and ``deepops train classifier --impl torch``).  Either way the twin takes over
the layer's attributes as they are: its parameters and buffers are the *same* tensors (nothing is copied or
re-initialised), its hooks stay, its ``state_dict`` keys are unchanged, and its outputs are equal.

* ``inplace=True`` swaps the layers inside ``model`` and returns it;
* ``inplace=False`` (default) leaves ``model`` untouched and returns a new module tree that shares every parameter
  and buffer with it: training one trains the other.  (``copy.deepcopy(model)`` first for an independent copy.)
"""

from __future__ import annotations

import copy

import torch.nn as tnn

from .activation import LeakyReLU, ReLU
from .conv import Conv2d, ConvTranspose2d
from .pool import MaxPool2d

#: the torch.nn classes that are converted, and their deepops twins
TWINS: dict[type, type] = {
    tnn.Conv2d: Conv2d,
    tnn.ConvTranspose2d: ConvTranspose2d,
    tnn.MaxPool2d: MaxPool2d,
    tnn.ReLU: ReLU,
    tnn.LeakyReLU: LeakyReLU,
}
_MAPS = {"deepops": TWINS, "torch": {ours: theirs for theirs, ours in TWINS.items()}}


def convert(model: tnn.Module, inplace: bool = False, to: str = "deepops") -> tnn.Module:
    """Return ``model`` with its Conv2d, ConvTranspose2d, MaxPool2d, ReLU and LeakyReLU layers run by deepops
    (``to="deepops"``) or by PyTorch (``to="torch"``)."""
    if not isinstance(model, tnn.Module):
        raise TypeError(f"deepops.nn.convert: 'model' must be a torch.nn.Module, got {type(model).__name__}")
    if to not in _MAPS:
        raise ValueError(f"deepops.nn.convert: 'to' must be 'deepops' or 'torch', got {to!r}")
    twins = _MAPS[to]
    root = model if inplace else _copy_tree(model, {})
    for module in root.modules():
        twin = twins.get(type(module))
        if twin is not None:
            # the twins add no state of their own, so changing the class is the whole conversion
            module.__class__ = twin
    return root


def _copy_tree(module: tnn.Module, memo: dict[int, tnn.Module]) -> tnn.Module:
    """A new tree of module objects that shares every parameter and buffer with ``module`` (and keeps a module that
    appears twice in the tree a single module)."""
    if id(module) in memo:
        return memo[id(module)]
    new = copy.copy(module)  # a new object over the same attribute values
    memo[id(module)] = new
    for key, value in module.__dict__.items():
        if isinstance(value, dict):  # _parameters, _buffers, _modules, hooks: own dicts, shared tensors
            new.__dict__[key] = copy.copy(value)
    for name, child in module._modules.items():
        if child is not None:
            new._modules[name] = _copy_tree(child, memo)
    return new
