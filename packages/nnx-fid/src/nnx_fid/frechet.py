"""Frechet distance between Gaussians, in float64 numpy on the host (Heusel et al. 2017).

Heusel et al. (2017), Eq. 6 (Dowson & Landau, 1982)::

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

:func:`frechet_distance` computes the trace term through a symmetric eigenvalue problem, with
no complex arithmetic and no ``+eps I`` retries: for any ``R`` with ``R R^T = S1``, ``S1 S2`` has
the non-zero eigenvalues of the symmetric PSD ``R^T S2 R``, so
``tr((S1 S2)^(1/2)) = sum_i sqrt(max(lambda_i, 0))`` with ``lambda = eigvalsh(R^T S2 R)``
(:func:`trace_sqrt_product`; ``R`` from a pivoted Cholesky). This is the usual eigenvalue
method with a Cholesky factor in place of the ``eigh`` square root; both agree with ``sqrtm``
to ~1e-15 relative on positive-definite covariances.

:func:`frechet_distance_sqrtm` is the legacy computation of ADM's evaluator and pytorch-fid
(``scipy.linalg.sqrtm`` of the product; retry with ``+eps I`` if not finite; raise if the
diagonal has an imaginary part above 1e-3; keep the real part), without the ``disp=`` argument
that SciPy 1.18 removed.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def _check(mu1, sigma1, mu2, sigma2) -> tuple[np.ndarray, ...]:
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    if mu1.shape != mu2.shape or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
            f"{sigma2.shape}; compare features of the same layer (pool 2048, spatial 2023)"
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} has non-finite entries; check the features or the stats file")
    return mu1, sigma1, mu2, sigma2


def psd_factor(sigma: np.ndarray) -> np.ndarray:
    """``R`` (``(D, r)``, r = numerical rank) with ``R R^T = sigma``, by pivoted Cholesky.

    LAPACK ``dpstrf`` factors ``P^T S P = L L^T`` and stops at the numerical rank (tolerance
    ``D * eps * max(diag S)``), so a covariance of fewer samples than dimensions yields a thin
    factor instead of square roots of rounding noise.
    """
    factor, pivots, rank, info = scipy.linalg.lapack.dpstrf(np.array(sigma, np.float64), lower=1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky rejected its input (LAPACK info {info})")
    lower = np.tril(factor)[:, :rank]
    root = np.empty_like(lower)
    root[pivots - 1] = lower  # LAPACK pivots are 1-based
    return root


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1, S2`` (float64), through ``eigvalsh``.

    With ``R R^T = S1`` (:func:`psd_factor`), ``S1 S2`` has the non-zero eigenvalues of the
    symmetric PSD ``R^T S2 R``, so the trace is ``sum_i sqrt(max(lambda_i, 0))`` of its
    eigenvalues. The roles of ``S1`` and ``S2`` are swapped when ``S2`` has the lower rank
    (``tr((S1 S2)^(1/2)) = tr((S2 S1)^(1/2))``), so the eigenproblem is ``r x r`` with ``r`` the
    smaller rank. Pivoted Cholesky plus ``eigvalsh`` costs about a third of an ``eigh`` with
    vectors at full rank, and on rank-deficient covariances it matches the exact low-rank value
    to ~1e-9 relative where ``eigh`` square roots and ``sqrtm`` are off by ~1e-7 (they take
    square roots of rounding noise).
    """
    root1, root2 = psd_factor(sigma1), psd_factor(sigma2)
    root, other = (root1, sigma2) if root1.shape[1] <= root2.shape[1] else (root2, sigma1)
    middle = root.T @ other @ root
    middle = 0.5 * (middle + middle.T)
    return float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(middle), 0.0))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance ``d^2`` between N(mu1, sigma1) and N(mu2, sigma2) (module docstring).

    Args:
      mu1: ``(D,)`` mean of the first Gaussian.
      sigma1: ``(D, D)`` symmetric PSD covariance of the first Gaussian.
      mu2: ``(D,)`` mean of the second Gaussian.
      sigma2: ``(D, D)`` symmetric PSD covariance of the second Gaussian.

    Returns:
      ``d^2`` as a Python float (FID when the inputs are Inception pool3 statistics).
    """
    mu1, sigma1, mu2, sigma2 = _check(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    trace_term = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_term)


def frechet_distance_sqrtm(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """The legacy ADM / pytorch-fid computation through ``scipy.linalg.sqrtm``.

    Raises:
      ValueError: the square root has a diagonal imaginary part above 1e-3.
    """
    mu1, sigma1, mu2, sigma2 = _check(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        warnings.warn(
            f"FID: singular product of covariances; adding {eps} to their diagonals",
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
