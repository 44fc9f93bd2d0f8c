"""Inception Score (Salimans et al., 2016), as ADM's evaluator computes it.

For each split of the predictions ``p(y|x)``::

    IS = exp( mean_x  KL( p(y|x) || p(y) ) ),   p(y) = mean_x p(y|x) over the split

and the reported score is the **mean over splits** (no standard deviation in ADM). ADM cuts the
samples, in order and without shuffling, into **contiguous splits of 5000** (the last one may be
shorter): 10 splits for the usual 50k samples. That is the default here (``split_size=5000``);
``num_splits=10`` instead cuts N samples into 10 contiguous near-equal parts (``np.array_split``;
identical to the default at N = 50000). torch-fidelity shuffles first (``RandomState(2020)``), so
its numbers differ slightly.

Probabilities are the float64 softmax of the Inception logits ``pool3 @ W`` (no bias; see
:mod:`nnx_fid.inception`). ``0 log 0`` is taken as 0, where ADM's ``p * log p`` would give NaN
for an exact zero (which a float64 softmax of finite logits practically never produces).
"""

from __future__ import annotations

import numpy as np
import scipy.special

ADM_SPLIT_SIZE = 5000


def softmax_probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise float64 softmax of ``(N, C)`` logits."""
    return scipy.special.softmax(np.asarray(logits, np.float64), axis=1)


def _split_scores(parts: list[np.ndarray]) -> np.ndarray:
    scores = []
    for part in parts:
        marginal = part.mean(axis=0, keepdims=True)
        kl = scipy.special.xlogy(part, part) - scipy.special.xlogy(part, marginal)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return np.asarray(scores)


def inception_score_per_split(
    probabilities: np.ndarray,
    *,
    split_size: int | None = None,
    num_splits: int | None = None,
) -> np.ndarray:
    """The score of each split (see the module docstring for the split rules).

    Args:
      probabilities: ``(N, C)`` class probabilities, rows summing to 1 (use
        :func:`softmax_probabilities` on logits).
      split_size: contiguous splits of this many samples (ADM: 5000, the default).
      num_splits: alternatively, this many contiguous near-equal splits.

    Returns:
      ``(num_splits,)`` float64 scores.
    """
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got {probabilities.shape}")
    if np.any(probabilities < 0) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(
            "rows must be probabilities summing to 1; pass softmax_probabilities(logits), not logits"
        )
    if split_size is not None and num_splits is not None:
        raise ValueError("give split_size or num_splits, not both")
    count = probabilities.shape[0]
    if num_splits is not None:
        if not 1 <= num_splits <= count:
            raise ValueError(f"num_splits must be in [1, {count}], got {num_splits}")
        parts = np.array_split(probabilities, num_splits)
    else:
        size = ADM_SPLIT_SIZE if split_size is None else split_size
        if size < 1:
            raise ValueError(f"split_size must be positive, got {size}")
        parts = [probabilities[i : i + size] for i in range(0, count, size)]
    return _split_scores(parts)


def inception_score(
    probabilities: np.ndarray,
    *,
    split_size: int | None = None,
    num_splits: int | None = None,
) -> float:
    """Mean Inception Score over splits (ADM's reported number); arguments as
    :func:`inception_score_per_split`."""
    scores = inception_score_per_split(probabilities, split_size=split_size, num_splits=num_splits)
    return float(np.mean(scores))
