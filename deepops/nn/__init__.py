"""Drop-in ``torch.nn`` layers that run on deepops' ops: same constructors, parameters and ``state_dict`` keys."""

from .activation import LeakyReLU, ReLU
from .conv import Conv2d, ConvTranspose2d

__all__ = ["ReLU", "LeakyReLU", "Conv2d", "ConvTranspose2d"]
