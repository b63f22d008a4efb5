"""The CPU kernels of the ops, one module per op family.

Each module holds its Numba kernels (NumPy arrays in, nothing of torch) and, at its bottom, the torch glue that
runs them: for every op ``X`` of the family, the function ``X`` that ``deepops.ops`` registers as the op's CPU
kernel.  The glue gets arguments that the op's check has already validated (``deepops._library.define``)."""

from . import activation, conv, nms, pool  # noqa: F401
