"""Frechet distance between Gaussians, in float64 numpy on the host (REFERENCE.md, 5.6).

Heusel et al. (2017), Eq. 6 (Dowson & Landau, 1982)::

    d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

:func:`frechet_distance` computes the trace term through a symmetric eigenvalue problem, with
no complex arithmetic and no ``+eps I`` retries: for any ``R`` with ``R R^T = S1``, ``S1 S2`` is
similar to the symmetric PSD ``R^T S2 R``, so ``tr((S1 S2)^(1/2)) = sum_i sqrt(max(lambda_i, 0))``
with ``lambda = eigvalsh(R^T S2 R)`` (:func:`trace_sqrt_product`). It agrees with ``sqrtm``
to about 1e-12 relative where ``sqrtm`` is well defined.

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


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1, S2`` (float64), through ``eigvalsh``.

    ``S1 = R R^T`` with ``R`` the Cholesky factor of ``S1`` (or of ``S2``, swapping the roles,
    as ``tr((S1 S2)^(1/2)) = tr((S2 S1)^(1/2))``) when one of them is numerically positive
    definite: one Cholesky instead of one ``eigh`` with vectors, about 3x fewer flops at 2048
    dims. When both are only semi-definite (fewer samples than dimensions), ``R = S1^(1/2)``
    from ``eigh`` with negative eigenvalues clamped to 0. Either way ``S1 S2`` is similar to
    ``R^T S2 R``, whose eigenvalues are real and non-negative up to rounding (clamped to 0).
    """
    root, other = None, sigma2
    for first, second in ((sigma1, sigma2), (sigma2, sigma1)):  # tr is symmetric in S1, S2
        try:
            root, other = np.linalg.cholesky(first), second
            break
        except np.linalg.LinAlgError:
            continue
    if root is None:
        eigenvalues, vectors = np.linalg.eigh(sigma1)
        root = (vectors * np.sqrt(np.maximum(eigenvalues, 0.0))) @ vectors.T
    middle = root.T @ other @ root
    middle = 0.5 * (middle + middle.T)
    return float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(middle), 0.0))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance ``d^2`` between N(mu1, sigma1) and N(mu2, sigma2) (module docstring).

    Args:
      mu1, mu2: ``(D,)`` means.
      sigma1, sigma2: ``(D, D)`` symmetric PSD covariances.

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
