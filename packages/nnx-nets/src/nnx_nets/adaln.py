"""Adaptive LayerNorm modulation (adaLN-Zero, Peebles & Xie 2023, sec. 3.2).

A condition vector c is mapped to per-channel shifts, scales and gates,
``Linear(SiLU(c))`` split into chunks, and a normalised input is modulated as
``x * (1 + scale) + shift``. The linear layer starts at zero, so every block starts as
the identity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.initializers import zeros


def modulate(x: jax.Array, shift: jax.Array | None, scale: jax.Array) -> jax.Array:
    """``x * (1 + scale) + shift`` (no shift when ``shift`` is None: LightningDiT ``wo_shift``)."""
    out = x * (1 + scale)
    return out if shift is None else out + shift


class AdaLNModulation(nnx.Module):
    """``Linear(SiLU(c))`` split into ``num_chunks`` tensors of width ``D``.

    Args:
      hidden_size: width ``D`` of each chunk.
      num_chunks: 6 for a DiT block (shift, scale, gate for attention and MLP), 4 without
        shifts, 2 for the final layer (shift, scale).
      cond_size: width of the condition (defaults to ``hidden_size``).
      dtype: compute dtype.
      rngs: unused by the zero initialisation, kept for a uniform signature.
    """

    def __init__(
        self,
        hidden_size: int,
        num_chunks: int,
        *,
        cond_size: int | None = None,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_chunks = num_chunks
        self.linear = nnx.Linear(
            cond_size or hidden_size,
            num_chunks * hidden_size,
            dtype=dtype,
            kernel_init=zeros,
            kernel_metadata={"logical_axes": ("embed", "mlp")},
            bias_metadata={"logical_axes": ("mlp",)},
            rngs=rngs,
        )

    def __call__(self, c: jax.Array) -> list[jax.Array]:
        """Condition ``(B, Dc)`` or per token ``(B, N, Dc)`` -> chunks ``(B, 1 or N, D)``."""
        if c.ndim == 2:
            c = c[:, None, :]
        return jnp.split(self.linear(jax.nn.silu(c)), self.num_chunks, axis=-1)
