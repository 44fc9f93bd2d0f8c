"""2-D axial rotary position embedding (EVA-02 style), as used by LightningDiT and DiT-DH.

Half of each head's channels rotate with the token's row, the other half with its
column (Su et al. 2021, eq. 34, applied per axis). Within each half, frequency
theta^(-2i/d) (d = head_dim / 2) rotates the adjacent channel pair (2i, 2i+1):

    q'[2i]   = q[2i]   cos(pos w_i) - q[2i+1] sin(pos w_i)
    q'[2i+1] = q[2i+1] cos(pos w_i) + q[2i]   sin(pos w_i)

which is EVA's ``t * cos + rotate_half(t) * sin`` with its interleaved ``rotate_half``.
The first half of the head channels follows the row (h), the second the column (w);
tokens are row-major over (h, w).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=32)
def axial_rope_tables(
    head_dim: int, grid_h: int, grid_w: int, *, theta: float = 10_000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and sine tables ``(grid_h * grid_w, head_dim)`` float32 for :func:`apply_rope`.

    Args:
      head_dim: channels per head; must be divisible by 4 (two axes, pairs of channels).
      grid_h: token grid height.
      grid_w: token grid width.
      theta: base of the frequencies (1e4).
    """
    if head_dim % 4:
        raise ValueError(
            f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}; "
            "choose hidden_size / num_heads as a multiple of 4"
        )
    half = head_dim // 2
    freqs = 1.0 / (theta ** (np.arange(0, half, 2, dtype=np.float32)[: half // 2] / half))
    freqs = freqs.astype(np.float32)

    def axis_angles(length: int) -> np.ndarray:
        # Positions as EVA computes them (arange(n) / n * n in float32).
        pos = (np.arange(length, dtype=np.float32) / np.float32(length)) * np.float32(length)
        return np.repeat(np.outer(pos, freqs).astype(np.float32), 2, axis=-1)  # (n, half)

    rows = np.broadcast_to(axis_angles(grid_h)[:, None, :], (grid_h, grid_w, half))
    cols = np.broadcast_to(axis_angles(grid_w)[None, :, :], (grid_h, grid_w, half))
    angles = np.concatenate([rows, cols], axis=-1).reshape(grid_h * grid_w, head_dim)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    cos.setflags(write=False)
    sin.setflags(write=False)
    return cos, sin


def _rotate_pairs(x: jax.Array) -> jax.Array:
    pairs = x.reshape(*x.shape[:-1], x.shape[-1] // 2, 2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1)
    return rotated.reshape(x.shape)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate queries or keys ``x: (B, N, heads, head_dim)`` with tables ``(N, head_dim)``.

    Computed in float32; returns the dtype of ``x``.
    """
    x32 = x.astype(jnp.float32)
    cos = jnp.asarray(cos)[None, :, None, :]
    sin = jnp.asarray(sin)[None, :, None, :]
    return (x32 * cos + _rotate_pairs(x32) * sin).astype(x.dtype)
