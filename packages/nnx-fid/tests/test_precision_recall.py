"""Improved precision/recall against a direct transcription of ADM's ManifoldEstimator."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_fid


def adm_reference(reference: np.ndarray, samples: np.ndarray, k: int = 3) -> tuple[float, float]:
    """ADM's algorithm in float64 numpy: squared distances, k-th entry of the partitioned
    distance row (self included at 0), membership with <=."""

    def squared(u, v):
        return np.maximum((u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :], 0.0)

    def radii(x):
        return np.partition(squared(x, x), k, axis=1)[:, k]

    ref_r, sample_r = radii(reference), radii(samples)
    distances = squared(reference, samples)
    precision = np.mean(np.any(distances <= ref_r[:, None], axis=0))
    recall = np.mean(np.any(distances <= sample_r[None, :], axis=1))
    return float(precision), float(recall)


@pytest.fixture(scope="module")
def feature_sets():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(57, 8))
    samples = 1.3 * rng.normal(size=(83, 8)) + 0.5
    return reference, samples


def test_matches_adm_with_padded_blocks(feature_sets):
    reference, samples = feature_sets
    expected = adm_reference(reference, samples)
    assert 0.05 < expected[0] < 0.95 and 0.05 < expected[1] < 0.95, expected  # non-trivial
    ours = nnx_fid.precision_recall(reference, samples, batch_size=16)  # 57, 83: ragged blocks
    assert ours == pytest.approx(expected, abs=1e-12)
    assert nnx_fid.precision_recall(reference, samples, batch_size=1000) == ours


def test_radii_are_kth_neighbour(feature_sets):
    reference, _ = feature_sets
    squared = ((reference[:, None] - reference[None]) ** 2).sum(-1)
    expected = np.sort(squared, axis=1)[:, 3]
    # float32 distances of O(10) values: relative error ~1e-6.
    np.testing.assert_allclose(
        nnx_fid.manifold_radii(reference, batch_size=10), expected, rtol=1e-5
    )


def test_a_set_against_itself_is_perfect(feature_sets):
    reference, _ = feature_sets
    assert nnx_fid.precision_recall(reference, reference, batch_size=16) == (1.0, 1.0)


def test_far_apart_sets_score_zero(feature_sets):
    reference, samples = feature_sets
    assert nnx_fid.precision_recall(reference, samples + 100.0) == (0.0, 0.0)


def test_too_few_points_is_named():
    with pytest.raises(ValueError, match="more than k=3"):
        nnx_fid.precision_recall(np.zeros((3, 4)), np.zeros((10, 4)))
