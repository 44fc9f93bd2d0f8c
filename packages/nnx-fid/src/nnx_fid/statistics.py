"""Gaussian statistics of features, in float64 on the host.

``mu = mean(x)``, ``sigma = cov(x)`` with the unbiased ``N - 1`` normalisation, as
``np.cov(x, rowvar=False)`` in ADM's evaluator, pytorch-fid and EDM2. The streaming
:class:`StatsAccumulator` keeps ``sum x`` and ``sum x x^T`` in float64 (EDM2's scheme)::

    mu = S1 / N,    sigma = (S2 - N mu mu^T) / (N - 1)
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianStats:
    """Mean and covariance of a feature distribution.

    Attributes:
      mu: ``(D,)`` float64 mean.
      sigma: ``(D, D)`` float64 covariance (``N - 1`` normalisation).
      num_samples: number of feature vectors behind the estimate (``None`` when a file does
        not record it).
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int | None = None

    def __post_init__(self):
        mu, sigma = np.asarray(self.mu), np.asarray(self.sigma)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(
                f"statistics need mu of shape (D,) and sigma of shape (D, D); got mu {mu.shape} "
                f"and sigma {sigma.shape}"
            )
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    @classmethod
    def from_features(cls, features: np.ndarray) -> GaussianStats:
        """Statistics of ``(N, D)`` features (N >= 2), computed in float64."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"features must be (N >= 2, D), got {features.shape}")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])


class StatsAccumulator:
    """Streaming float64 ``sum x`` / ``sum x x^T`` over batches of features.

    Example::

        acc = StatsAccumulator()
        for batch in batches:            # (B, D) each
            acc.update(batch)
        stats = acc.result()             # GaussianStats
    """

    def __init__(self):
        self.count = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        """Add a ``(B, D)`` batch (any float dtype; converted to float64)."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2:
            raise ValueError(f"features must be (B, D), got {features.shape}")
        if self._sum is None:
            self._sum = np.zeros(features.shape[1])
            self._outer = np.zeros((features.shape[1], features.shape[1]))
        elif features.shape[1] != self._sum.shape[0]:
            raise ValueError(
                f"feature width changed from {self._sum.shape[0]} to {features.shape[1]}"
            )
        self._sum += features.sum(axis=0)
        self._outer += features.T @ features
        self.count += features.shape[0]

    def result(self) -> GaussianStats:
        """The statistics of everything added so far (needs at least 2 vectors)."""
        if self._sum is None or self.count < 2:
            raise ValueError(f"need at least 2 feature vectors, have {self.count}")
        mu = self._sum / self.count
        sigma = (self._outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return GaussianStats(mu, sigma, self.count)
