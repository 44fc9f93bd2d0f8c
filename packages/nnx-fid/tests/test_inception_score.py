"""Inception Score: closed forms and ADM's contiguous-split rule."""

from __future__ import annotations

import numpy as np
import pytest

import nnx_fid


def test_identical_predictions_score_one():
    probabilities = np.tile(
        nnx_fid.softmax_probabilities(np.random.default_rng(0).normal(size=(1, 1008))), (64, 1)
    )
    assert nnx_fid.inception_score(probabilities) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("num_classes_used", [1, 3, 10])
def test_equally_used_one_hot_classes_score_k(num_classes_used):
    labels = np.arange(20 * num_classes_used) % num_classes_used
    probabilities = np.eye(1008)[labels]
    assert nnx_fid.inception_score(probabilities) == pytest.approx(num_classes_used, rel=1e-12)


def adm_inception_score(preds: np.ndarray, split_size: int) -> float:
    """ADM evaluator's loop (strictly positive predictions, so its log p is finite)."""
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def test_matches_adm_loop_with_a_short_last_split():
    logits = 3.0 * np.random.default_rng(1).normal(size=(23, 50))
    probabilities = nnx_fid.softmax_probabilities(logits)
    ours = nnx_fid.inception_score(probabilities, split_size=5)  # splits 5,5,5,5,3
    assert len(nnx_fid.inception_score_per_split(probabilities, split_size=5)) == 5
    assert ours == pytest.approx(adm_inception_score(probabilities, 5), rel=1e-12)
    assert ours != pytest.approx(nnx_fid.inception_score(probabilities, split_size=23), rel=1e-3)


def test_num_splits_equals_split_size_when_divisible():
    probabilities = nnx_fid.softmax_probabilities(np.random.default_rng(2).normal(size=(100, 30)))
    by_count = nnx_fid.inception_score(probabilities, num_splits=10)
    by_size = nnx_fid.inception_score(probabilities, split_size=10)
    assert by_count == pytest.approx(by_size, rel=1e-14)
    assert nnx_fid.ADM_SPLIT_SIZE == 5000


def test_logits_are_rejected():
    with pytest.raises(ValueError, match="softmax_probabilities"):
        nnx_fid.inception_score(np.random.default_rng(3).normal(size=(10, 5)))
    with pytest.raises(ValueError, match="not both"):
        nnx_fid.inception_score(np.eye(4), split_size=2, num_splits=2)
