"""Bilinear resizing as the two Inception front-ends do it, built as explicit matrices.

Each mode is a separable linear map: a float64 ``(out, in)`` interpolation matrix per axis,
built on the host from the static sizes (rows sum to 1) and applied with two einsums at
``Precision.HIGHEST``. Source coordinate of output index ``j`` with ``scale = in / out``:

================  ===================================  ========================================
mode              source coordinate                    used by
================  ===================================  ========================================
``"tf1"``         ``s = j * scale``                    ADM / TTUR TF1 graph (``ResizeBilinear``,
                                                       ``align_corners=False``, no half pixel)
``"pytorch_fid"`` ``s = max((j + 1/2) scale - 1/2, 0)``  ``F.interpolate(bilinear,
                                                       align_corners=False)`` = half-pixel,
                                                       no antialias
================  ===================================  ========================================

then ``i0 = floor(s)``, ``i1 = min(i0 + 1, in - 1)`` (last index clamped) and
``out[j] = (1 - (s - i0)) in[i0] + (s - i0) in[i1]``. Upsampling ``[0, 10]`` to 4 samples gives
``[0, 5, 10, 10]`` in ``tf1`` and ``[0, 2.5, 7.5, 10]`` in ``pytorch_fid`` (by hand from
the formulas above).
Neither mode antialiases when it downsamples, as neither reference does.

``jax.image.scale_and_translate`` reproduces ``tf1`` only at some sizes (it renormalises border
weights, which breaks the clamp for large upsampling), hence the explicit matrices.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

ResizeMode = Literal["tf1", "pytorch_fid"]
RESIZE_MODES: tuple[str, ...] = ("tf1", "pytorch_fid")


def check_resize_mode(mode: str) -> None:
    """Raise a ValueError naming the valid modes unless ``mode`` is one of them."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int, mode: ResizeMode) -> np.ndarray:
    """Bilinear interpolation weights, ``(out_size, in_size)`` float64, rows summing to 1.

    Args:
      in_size: input length along the axis.
      out_size: output length.
      mode: ``"tf1"`` or ``"pytorch_fid"`` (see the module docstring).

    Returns:
      ``M`` with ``resized = M @ signal`` along that axis. The array is cached; do not mutate.
    """
    check_resize_mode(mode)
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got in_size={in_size}, out_size={out_size}")
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for j in range(out_size):
        if mode == "tf1":
            source = j * scale
        else:
            source = max((j + 0.5) * scale - 0.5, 0.0)
        low = min(math.floor(source), in_size - 1)
        high = min(low + 1, in_size - 1)
        frac = source - low
        matrix[j, low] += 1.0 - frac
        matrix[j, high] += frac
    matrix.setflags(write=False)
    return matrix


def resize_bilinear(images: jax.Array, size: tuple[int, int], mode: ResizeMode) -> jax.Array:
    """Resize NHWC images with the bilinear rule of ``mode``.

    Args:
      images: ``(B, H, W, C)`` float (any range; the map is linear).
      size: ``(out_height, out_width)``.
      mode: ``"tf1"`` or ``"pytorch_fid"``.

    Returns:
      ``(B, out_height, out_width, C)`` float32.
    """
    _, height, width, _ = images.shape
    rows = jnp.asarray(interpolation_matrix(height, size[0], mode), jnp.float32)
    cols = jnp.asarray(interpolation_matrix(width, size[1], mode), jnp.float32)
    highest = jax.lax.Precision.HIGHEST
    images = images.astype(jnp.float32)
    images = jnp.einsum("oh,bhwc->bowc", rows, images, precision=highest)
    return jnp.einsum("pw,bowc->bopc", cols, images, precision=highest)
