"""Per-image reconstruction quality: PSNR and SSIM, as RAE's stage-1 evaluation computes them.

Both take uint8 NHWC images (the I/O boundary, CONVENTIONS.md), work on ``x / 255`` in [0, 1]
(data range 1) and return one value per image; RAE reports the mean over images.

- PSNR (per image): ``20 log10(1 / sqrt(max(MSE, 1e-10)))`` with the MSE over H, W, C.
- SSIM (Wang et al., 2004, Eq. 13) with torchmetrics' defaults, which RAE calls: an 11 x 11
  Gaussian window with sigma 1.5, ``C1 = (0.01)^2``, ``C2 = (0.03)^2``, per channel, averaged over
  the channels and the positions whose window lies fully inside the image (torchmetrics pads,
  filters, then crops the padding away, which equals a "valid" filter)::

      SSIM = mean[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))]

  with local moments from the Gaussian window (population, not sample, covariance).

The Gaussian filter is separable, so each filtering is two small matrix products; the moments
run in float32 at ``Precision.HIGHEST`` on images centred by their channel means.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SSIM_WINDOW", "psnr", "ssim"]

SSIM_WINDOW = {"size": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03}
"""torchmetrics' ``structural_similarity_index_measure`` defaults (RAE's ``calculate_ssim``)."""

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    for name, images in (("reference", reference), ("test", test)):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"{name} images must be uint8 (N, H, W, C), got {images.dtype} "
                f"{tuple(images.shape)}; convert model pixels with nnx_fid.to_uint8"
            )
    if reference.shape != test.shape:
        raise ValueError(
            f"reference {tuple(reference.shape)} and test {tuple(test.shape)} images differ in "
            "shape; reconstructions must have the size of their inputs"
        )


def psnr(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio per image, data range 1, in dB.

    Args:
      reference: ``(N, H, W, C)`` uint8.
      test: ``(N, H, W, C)`` uint8.

    Returns:
      ``(N,)`` float64; identical images give ``100`` (the 1e-10 MSE floor).
    """
    _check_pair(reference, test)
    diff = reference.astype(np.float64) / 255.0 - test.astype(np.float64) / 255.0
    mse = np.maximum(np.mean(diff * diff, axis=(1, 2, 3)), 1e-10)
    return 20.0 * np.log10(1.0 / np.sqrt(mse))


@functools.cache
def _valid_gaussian_matrix(size: int, window: int, sigma: float) -> np.ndarray:
    """``(size - window + 1, size)`` matrix applying a normalised 1-D Gaussian, valid positions."""
    offsets = np.arange(window, dtype=np.float64) - (window - 1) / 2.0
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    taps /= taps.sum()
    out = size - window + 1
    matrix = np.zeros((out, size))
    for row in range(out):
        matrix[row, row : row + window] = taps
    return matrix


@jax.jit
def _ssim_batch(x: jax.Array, y: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    c1 = SSIM_WINDOW["k1"] ** 2
    c2 = SSIM_WINDOW["k2"] ** 2

    def blur(z: jax.Array) -> jax.Array:  # (N, H, W, C) -> (N, H', W', C)
        return jnp.einsum("ah,bw,nhwc->nabc", rows, cols, z, precision=_HIGHEST)

    # Moments of images centred on their own channel means: variances and the covariance do
    # not change, and E[z^2] - E[z]^2 cancels far less in float32 (exact on flat regions).
    offset_x = jnp.mean(x, axis=(1, 2), keepdims=True)
    offset_y = jnp.mean(y, axis=(1, 2), keepdims=True)
    x, y = x - offset_x, y - offset_y
    centred_mu_x, centred_mu_y = blur(x), blur(y)
    var_x = blur(x * x) - centred_mu_x * centred_mu_x
    var_y = blur(y * y) - centred_mu_y * centred_mu_y
    cov = blur(x * y) - centred_mu_x * centred_mu_y
    mu_x, mu_y = centred_mu_x + offset_x, centred_mu_y + offset_y
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    contrast_structure = (2.0 * cov + c2) / (var_x + var_y + c2)
    return jnp.mean(luminance * contrast_structure, axis=(1, 2, 3))


def ssim(reference: np.ndarray, test: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """Structural similarity per image (torchmetrics / RAE defaults; see the module docstring).

    Args:
      reference: ``(N, H, W, C)`` uint8, with H and W at least 11.
      test: ``(N, H, W, C)`` uint8.
      batch_size: images per jitted call (bounds memory; the last call is padded).

    Returns:
      ``(N,)`` float64 in [-1, 1]; identical images give 1.
    """
    _check_pair(reference, test)
    _, height, width, _ = reference.shape
    size = SSIM_WINDOW["size"]
    if min(height, width) < size:
        raise ValueError(f"SSIM needs images of at least {size} x {size}, got {height} x {width}")
    rows = jnp.asarray(_valid_gaussian_matrix(height, size, SSIM_WINDOW["sigma"]), jnp.float32)
    cols = jnp.asarray(_valid_gaussian_matrix(width, size, SSIM_WINDOW["sigma"]), jnp.float32)
    values = []
    for start in range(0, reference.shape[0], batch_size):
        ref = reference[start : start + batch_size]
        tst = test[start : start + batch_size]
        count = ref.shape[0]
        pad = batch_size - count if reference.shape[0] > batch_size else 0
        if pad:
            ref = np.concatenate([ref, np.repeat(ref[-1:], pad, axis=0)])
            tst = np.concatenate([tst, np.repeat(tst[-1:], pad, axis=0)])
        x = jnp.asarray(ref, jnp.float32) / 255.0
        y = jnp.asarray(tst, jnp.float32) / 255.0
        values.append(np.asarray(_ssim_batch(x, y, rows, cols), np.float64)[:count])
    return np.concatenate(values) if values else np.zeros((0,), np.float64)
