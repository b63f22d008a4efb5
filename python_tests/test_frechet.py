"""The Fréchet distance on cases with a known answer: closed forms for 1-D, diagonal, commuting and scaled
covariances, a reference computed with scipy's general matrix square root, and sample estimates converging to the
distance between the Gaussians they were drawn from."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from deepops.metrics import frechet_distance, frechet_distance_features, gaussian_stats


def _spd(rng, d, cond=10.0):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * rng.uniform(1.0, cond, d)) @ q.T


def test_identical_gaussians_are_at_distance_zero():
    rng = np.random.default_rng(0)
    for d in (1, 5, 64):
        mu, s = rng.standard_normal(d), _spd(rng, d)
        assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-8 * d)


def test_one_dimension_closed_form():
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2
    for m1, s1, m2, s2 in [(0, 1, 0, 1), (1.5, 2.0, -0.5, 0.5), (3, 0.1, 3, 4), (0, 0, 2, 0)]:
        want = (m1 - m2) ** 2 + (s1 - s2) ** 2
        assert frechet_distance([m1], [[s1**2]], [m2], [[s2**2]]) == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_diagonal_and_commuting_covariances():
    # same eigenvectors: sum of (sqrt(a_i) - sqrt(b_i))^2, whatever the common rotation
    rng = np.random.default_rng(1)
    d = 12
    a, b = rng.uniform(0.1, 5, d), rng.uniform(0.1, 5, d)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-9)


def test_scaled_covariance():
    # S2 = c^2 S1: (1 - c)^2 tr(S1)
    rng = np.random.default_rng(2)
    s = _spd(rng, 20)
    mu = np.zeros(20)
    for c in (0.0, 0.5, 1.0, 3.0):
        assert frechet_distance(mu, s, mu, c * c * s) == pytest.approx((1 - c) ** 2 * np.trace(s), rel=1e-9, abs=1e-9)


def test_general_covariances_match_scipy_sqrtm_reference():
    rng = np.random.default_rng(3)
    for d in (2, 7, 32):
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _spd(rng, d, 50), _spd(rng, d, 5)
        cross = scipy.linalg.sqrtm(s1 @ s2).real
        want = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross)
        got = frechet_distance(m1, s1, m2, s2)
        assert got == pytest.approx(want, rel=1e-8)
        assert frechet_distance(m2, s2, m1, s1) == pytest.approx(got, rel=1e-9)  # symmetric


def test_singular_covariances():
    # a point mass against N(0, I): tr(I) = d; two point masses: the squared distance of the points
    d = 6
    z = np.zeros((d, d))
    assert frechet_distance(np.zeros(d), z, np.zeros(d), np.eye(d)) == pytest.approx(d)
    assert frechet_distance(np.ones(d), z, np.zeros(d), z) == pytest.approx(d)


def test_sample_estimate_converges_to_the_gaussians_distance():
    gen = torch.Generator().manual_seed(0)
    d, n = 8, 40000
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    scale = torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    shift = torch.full((d,), 0.5, dtype=torch.float64)
    b = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale + shift
    want = float((shift**2).sum() + ((1 - scale) ** 2).sum())
    assert frechet_distance_features(a, b) == pytest.approx(want, rel=0.05)
    mu, sigma = gaussian_stats(b)
    np.testing.assert_allclose(mu, shift.numpy(), atol=0.05)
    np.testing.assert_allclose(np.diag(sigma), (scale**2).numpy(), rtol=0.05)


@pytest.mark.parametrize(
    "call,arg",
    [
        (lambda: frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(3)), "mu2"),
        (lambda: frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), "sigma1"),
        (lambda: frechet_distance_features(np.zeros((5, 3)), np.zeros((5, 4))), "features2"),
        (lambda: frechet_distance_features(np.zeros(5), np.zeros((5, 4))), "features1"),
        (lambda: frechet_distance_features(np.zeros((1, 3)), np.zeros((5, 3))), "features1"),
        (lambda: frechet_distance_features(np.full((4, 3), np.nan), np.zeros((5, 3))), "features1"),
    ],
)
def test_bad_inputs_name_the_argument(call, arg):
    with pytest.raises(ValueError, match=f"deepops.metrics.frechet: '{arg}'"):
        call()
