"""Numba CPU kernels, one module per op. They take NumPy arrays and know nothing of torch."""
