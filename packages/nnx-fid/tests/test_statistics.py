"""Streaming float64 statistics equal the batch formulas."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_fid


def test_streaming_equals_numpy():
    rng = np.random.default_rng(0)
    features = (rng.normal(size=(1000, 16)) * 3 + 5).astype(np.float32)
    accumulator = nnx_fid.StatsAccumulator()
    for start, stop in [(0, 7), (7, 500), (500, 999), (999, 1000)]:  # uneven batches
        accumulator.update(features[start:stop])
    stats = accumulator.result()
    assert stats.num_samples == 1000
    np.testing.assert_allclose(stats.mu, features.astype(np.float64).mean(0), rtol=1e-13)
    # sum x x^T - N mu mu^T cancels ~25 (mean^2) against ~9 (variance): 1e-12 relative is
    # float64 rounding times that ratio, far below float32 accumulation errors (~1e-6).
    np.testing.assert_allclose(
        stats.sigma, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-11, atol=1e-11
    )
    direct = nnx_fid.GaussianStats.from_features(features)
    assert direct.mu.dtype == np.float64 and direct.sigma.dtype == np.float64


def test_errors_are_named():
    accumulator = nnx_fid.StatsAccumulator()
    with pytest.raises(ValueError, match="at least 2"):
        accumulator.result()
    accumulator.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="width changed"):
        accumulator.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="mu of shape"):
        nnx_fid.GaussianStats(np.zeros(3), np.eye(4))
