"""Drop-in ``torch.nn`` layers that run on deepops' ops: same constructors, parameters and ``state_dict`` keys."""

from .activation import LeakyReLU, ReLU
from .pool import MaxPool2d

__all__ = ["ReLU", "LeakyReLU", "MaxPool2d"]
