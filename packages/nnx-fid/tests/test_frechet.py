"""Frechet distance: closed forms, the finite-sample bias, and agreement with pytorch-fid."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pytorch_fid.fid_score import calculate_frechet_distance

import nnx_fid


def test_unit_mean_shift_in_2048_dims():
    dim = 2048
    value = nnx_fid.frechet_distance(np.zeros(dim), np.eye(dim), np.ones(dim), np.eye(dim))
    assert value == pytest.approx(2048.0, rel=1e-12)


def test_two_by_two_by_hand():
    # tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) for 2 x 2 (closed form).
    s1 = np.array([[2.0, 0.5], [0.5, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 3.0]])
    by_hand = (
        np.trace(s1)
        + np.trace(s2)
        - 2 * np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    )
    assert by_hand == pytest.approx(0.9293118549677741, rel=1e-14)
    zero = np.zeros(2)
    assert nnx_fid.frechet_distance(zero, s1, zero, s2) == pytest.approx(
        0.9293118549677741, rel=1e-12
    )
    assert nnx_fid.frechet_distance_sqrtm(zero, s1, zero, s2) == pytest.approx(
        0.9293118549677741, rel=1e-12
    )


def test_scaled_identities_and_diagonals():
    dim = 8
    assert nnx_fid.frechet_distance(
        np.zeros(dim), np.eye(dim), np.zeros(dim), 4 * np.eye(dim)
    ) == pytest.approx(8.0, rel=1e-12)
    a, b = np.array([1.0, 2.0, 9.0]), np.array([4.0, 0.5, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert nnx_fid.frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == (
        pytest.approx(expected, rel=1e-12)
    )


def _random_stats(rng, num, dim, shift=0.0):
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    features = rng.normal(size=(num, dim)) @ mixing + shift
    return nnx_fid.GaussianStats.from_features(features)


def test_symmetry_zero_and_invariances():
    rng = np.random.default_rng(0)
    a, b = _random_stats(rng, 300, 16), _random_stats(rng, 300, 16, shift=0.3)
    d_ab = nnx_fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    d_ba = nnx_fid.frechet_distance(b.mu, b.sigma, a.mu, a.sigma)
    assert d_ab > 0.1
    assert d_ab == pytest.approx(d_ba, rel=1e-12)
    assert abs(nnx_fid.frechet_distance(a.mu, a.sigma, a.mu, a.sigma)) < 1e-12 * np.trace(a.sigma)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    shift = rng.normal(size=16)
    moved = nnx_fid.frechet_distance(
        rotation @ a.mu + shift,
        rotation @ a.sigma @ rotation.T,
        rotation @ b.mu + shift,
        rotation @ b.sigma @ rotation.T,
    )
    assert moved == pytest.approx(d_ab, rel=1e-10)


def test_same_fid_as_pytorch_fid():
    rng = np.random.default_rng(1)
    a, b = _random_stats(rng, 400, 64), _random_stats(rng, 400, 64, shift=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its sqrtm(disp=False) call
        reference = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    ours = nnx_fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    legacy = nnx_fid.frechet_distance_sqrtm(a.mu, a.sigma, b.mu, b.sigma)
    assert ours == pytest.approx(reference, rel=1e-6)
    assert legacy == pytest.approx(reference, rel=1e-10)


def test_rank_deficient_covariances():
    """20 samples in 64 dims (FID from few samples): S1 = C^T C with C the centred features
    over sqrt(N - 1), so tr((S1 S2)^(1/2)) = sum sqrt(eig(C S2 C^T)), a 20 x 20 problem free of
    the 44 zero eigenvalues. The pivoted-Cholesky path matches it to 1e-8 relative (measured
    ~1e-9); scipy's sqrtm (square roots of rounding noise) is only good to ~1e-7."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(20, 64)) @ rng.normal(size=(64, 64))
    sigma1 = np.cov(features, rowvar=False)
    centred = (features - features.mean(0)) / np.sqrt(19)
    sigma2 = _random_stats(rng, 300, 64, shift=0.1).sigma
    exact = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(centred @ sigma2 @ centred.T), 0)))
    assert nnx_fid.trace_sqrt_product(sigma1, sigma2) == pytest.approx(exact, rel=1e-8)
    assert nnx_fid.trace_sqrt_product(sigma2, sigma1) == pytest.approx(exact, rel=1e-8)
    zero = np.zeros(64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = nnx_fid.frechet_distance_sqrtm(zero, sigma1, zero, sigma2)
    assert nnx_fid.frechet_distance(zero, sigma1, zero, sigma2) == pytest.approx(legacy, rel=1e-6)


def test_finite_sample_bias_of_equal_gaussians():
    """Two N-sample estimates of the same N(0, I) in d dims: to second order
    E[d^2] = 2d/N (means) + d(d+1) / (2(N-1)) (covariances: the Bures distance near I is
    ||S1 - S2||_F^2 / 4 and each sample covariance entry has variance (1 + [i=j]) / (N-1)).
    Higher orders are O(d/N) relative (0.4% here); the Monte-Carlo mean of 400 trials has a
    standard error estimated from the trials themselves, and we allow 4 of them."""
    dim, num, trials = 4, 1000, 400
    rng = np.random.default_rng(3)
    values = []
    for _ in range(trials):
        a = nnx_fid.GaussianStats.from_features(rng.normal(size=(num, dim)))
        b = nnx_fid.GaussianStats.from_features(rng.normal(size=(num, dim)))
        values.append(nnx_fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    values = np.asarray(values)
    expected = 2 * dim / num + dim * (dim + 1) / (2 * (num - 1))
    standard_error = values.std(ddof=1) / np.sqrt(trials)
    print(f"mean {values.mean():.6f}, formula {expected:.6f}, s.e. {standard_error:.6f}")
    assert abs(values.mean() - expected) < 4 * standard_error + 0.01 * expected


def test_mismatched_statistics_are_named():
    with pytest.raises(ValueError, match="do not match"):
        nnx_fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="non-finite"):
        nnx_fid.frechet_distance(np.full(2, np.nan), np.eye(2), np.zeros(2), np.eye(2))
