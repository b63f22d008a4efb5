"""The Fréchet distance between two sets of feature vectors, each summarised by a Gaussian (mean and covariance).

For Gaussians N(m1, S1) and N(m2, S2) the squared 2-Wasserstein (Fréchet) distance is

    d^2 = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1^(1/2) S2 S1^(1/2))^(1/2))

(Dowson and Landau, 1982).  The cross term is computed from a symmetric matrix: with A = S1^(1/2) (from an
eigendecomposition, negative eigenvalues of a noisy estimate clipped to 0), A S2 A is symmetric positive
semi-definite and its trace square root is the sum of the square roots of its eigenvalues.  This avoids the general
``sqrtm`` of the non-symmetric S1 S2 (and its complex round-off).  Everything is computed in float64.

This is what the FID (Heusel et al., 2017) reports, but the FID uses the Inception network's pool features; the
GAN score in ``deepops.metrics.gan_score`` uses the features of a small digits classifier instead, so its numbers
are comparable only with each other (see that module).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_2d(x, name: str) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"deepops.metrics.frechet: '{name}' must be a 2-D array (samples, features), got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"deepops.metrics.frechet: '{name}' needs at least 2 samples to estimate a covariance, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"deepops.metrics.frechet: '{name}' contains NaN or infinite values")
    return a


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``n - 1``) covariance of the rows of ``features`` (samples, dims), in float64."""
    a = _as_2d(features, "features")
    return a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False))


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance d^2 between N(mu1, sigma1) and N(mu2, sigma2) (the squared distance, as FID reports)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    for name, m in (("mu1", mu1), ("mu2", mu2)):
        if m.shape != (d,):
            raise ValueError(f"deepops.metrics.frechet: '{name}' must have shape ({d},), got {m.shape}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"deepops.metrics.frechet: '{name}' must have shape ({d}, {d}), got {s.shape}")
    a = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0.0, None)).sum()
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)
    return max(value, 0.0)  # round-off can leave a tiny negative number for (nearly) identical inputs


def frechet_distance_features(features1, features2) -> float:
    """The Fréchet distance between the Gaussians fitted to two sets of feature vectors (samples, dims)."""
    a, b = _as_2d(features1, "features1"), _as_2d(features2, "features2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"deepops.metrics.frechet: 'features2' has {b.shape[1]} dims, 'features1' has {a.shape[1]}")
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


__all__ = ["gaussian_stats", "frechet_distance", "frechet_distance_features"]
