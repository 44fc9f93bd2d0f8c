"""The one conversion between model pixels in [-1, 1] and uint8 images (CONVENTIONS.md, tensors).

Quantisation: **rounding**, as DiT / SiT / REPA (``clamp(127.5 x + 128, 0, 255).to(uint8)``) and
EDM2 (``x * 127.5 + 128``, clipped) write their sample ``.npz`` files::

    u = clip(floor(127.5 * x + 128), 0, 255) = round-half-up(127.5 * (x + 1))

ADM's ``sample.py`` truncates instead (``((x + 1) * 127.5).clamp(0, 255).to(uint8)``), which shifts
every pixel down by half a level on average; RAE truncates ``clamp(0, 1) * 255``. The choice moves
FID by a few hundredths, so it is recorded in every result dict as ``"quantisation": "round"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

QUANTISATION = "round"


def to_uint8(images: jax.Array | np.ndarray) -> jax.Array:
    """Model pixels -> uint8 by rounding (see the module docstring).

    Args:
      images: ``(..., H, W, C)`` float, nominally in [-1, 1]; values outside are clipped.

    Returns:
      uint8 array of the same shape, ``clip(floor(127.5 x + 128), 0, 255)``.
    """
    images = jnp.asarray(images, jnp.float32)
    return jnp.clip(jnp.floor(127.5 * images + 128.0), 0.0, 255.0).astype(jnp.uint8)


def from_uint8(images: jax.Array | np.ndarray) -> jax.Array:
    """uint8 -> model pixels ``u / 127.5 - 1`` in [-1, 1], float32."""
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise TypeError(f"from_uint8 expects uint8 images, got {images.dtype}; use to_uint8 first")
    return images.astype(jnp.float32) / 127.5 - 1.0


def check_uint8_images(images: np.ndarray | jax.Array, *, name: str = "images") -> None:
    """Raise a clear error unless ``images`` is a uint8 ``(N, H, W, 3)`` array."""
    if images.dtype != np.uint8:
        raise TypeError(
            f"{name} must be uint8 NHWC in [0, 255], got dtype {images.dtype}; "
            "convert model outputs with nnx_fid.to_uint8"
        )
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (N, H, W, 3), got {tuple(images.shape)}; "
            "grey images must be repeated to 3 channels and NCHW transposed to NHWC"
        )
