"""deepops: hand-written CUDA kernels and Numba CPU kernels for the core operations of convolutional networks,
exposed as PyTorch ops (``torch.ops.deepops.*``) with drop-in Python functions.

    >>> import torch, deepops
    >>> deepops.relu(torch.randn(4))  # same as torch.nn.functional.relu
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import _library
from .ops.activation import leaky_relu, relu
from .ops.conv import conv2d, conv_transpose2d
from .ops.nms import batched_nms, box_iou, nms

# every schema is defined by now: load the CUDA kernels (or register the how-to-build errors)
_library.load_cuda_kernels()

from . import nn  # noqa: E402  (the modules use the ops above)
from ._info import info  # noqa: E402

__all__ = ["relu", "leaky_relu", "conv2d", "conv_transpose2d", "nms", "batched_nms", "box_iou", "nn", "info", "__version__"]
