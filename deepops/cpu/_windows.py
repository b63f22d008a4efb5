"""Index arithmetic that the convolution and pooling kernels share."""

from __future__ import annotations

import numba


@numba.njit(inline="always")
def valid_range(Q, sw, off, W):
    """The output columns q in [lo, hi) for which 0 <= q * sw + off < W."""
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    hi = 0
    if W - off > 0:
        hi = (W - off + sw - 1) // sw
    if hi > Q:
        hi = Q
    if lo > hi:
        lo = hi
    return lo, hi
