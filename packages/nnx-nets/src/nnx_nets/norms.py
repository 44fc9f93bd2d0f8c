"""Normalisation layers of the DiT family, always computed in float32.

DiT normalises with a LayerNorm without affine parameters (the affine part comes from
adaLN); LightningDiT and DiT-DH use an RMSNorm with a learnable weight. Both compute in
float32 whatever the compute dtype, and return the input dtype (CONVENTIONS.md, dtypes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def layer_norm(x: jax.Array, *, eps: float = 1e-6) -> jax.Array:
    """LayerNorm without affine parameters over the last axis, in float32.

    y = (x - mean(x)) / sqrt(var(x) + eps)  (Ba et al. 2016, eq. 4, without gain and bias).

    Args:
      x: ``(..., D)`` any float dtype.
      eps: added to the variance; DiT uses 1e-6.

    Returns:
      ``(..., D)`` in the dtype of ``x``.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class RMSNorm(nnx.Module):
    """Root-mean-square norm with a learnable weight (Zhang & Sennrich 2019, eq. 4).

    y = x / sqrt(mean(x^2) + eps) * scale, the normalisation in float32 as in LightningDiT.

    Args:
      num_features: size ``D`` of the last axis.
      eps: added to the mean square (LightningDiT: 1e-6).
      rngs: unused, kept for a uniform constructor signature.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-6, rngs: nnx.Rngs) -> None:
        del rngs
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32), logical_axes=(None,))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalise ``x: (..., D)``; returns ``(..., D)`` in the dtype of ``x``."""
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (normed.astype(x.dtype) * self.scale[...]).astype(x.dtype)
