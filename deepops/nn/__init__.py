"""Drop-in ``torch.nn`` layers that run on deepops' ops: same constructors, parameters and ``state_dict`` keys."""

from .activation import LeakyReLU, ReLU

__all__ = ["ReLU", "LeakyReLU"]
