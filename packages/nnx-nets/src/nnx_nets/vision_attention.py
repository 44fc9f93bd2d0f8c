"""Multi-head self-attention with separate q, k, v projections, shared by the vision networks.

DINOv2 (HF layout ``attention.attention.{query,key,value}`` / ``attention.output.dense``), the
RAE ViT-MAE decoder (same layout) and the SD-VAE mid-block attention (``to_q/to_k/to_v/to_out``,
one head) all keep q, k and v as three Linear layers, so the conversion maps them one to one.

Attention is ``softmax(q k^T / sqrt(d_head)) v`` (Vaswani et al., 2017, Eq. 1), computed with
``jax.nn.dot_product_attention`` so that fused kernels are used where the platform has them; the
softmax runs in float32 whatever the compute dtype.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from flax import nnx

PrecisionLike = jax.lax.Precision | str | None
TRUNC_NORMAL_002 = nnx.initializers.truncated_normal(0.02)


def matmul_precision(precision: PrecisionLike) -> contextlib.AbstractContextManager:
    """A context that sets the default matmul precision while tracing (no-op for ``None``).

    ``jax.nn.dot_product_attention`` takes no ``precision`` argument, so feature extractors
    that must run at ``Precision.HIGHEST`` (CONVENTIONS.md, dtypes) trace it inside this context.
    """
    if precision is None:
        return contextlib.nullcontext()
    name = precision.name.lower() if isinstance(precision, jax.lax.Precision) else str(precision)
    return jax.default_matmul_precision(name)


def dense(
    in_features: int,
    out_features: int,
    axes: tuple[str | None, str | None],
    *,
    dtype: jnp.dtype,
    precision: PrecisionLike,
    rngs: nnx.Rngs,
    kernel_init: nnx.Initializer = TRUNC_NORMAL_002,
) -> nnx.Linear:
    """An ``nnx.Linear`` with float32 parameters and logical axis names on kernel and bias.

    Args:
      in_features / out_features: widths.
      axes: logical names of the kernel's (in, out) dimensions; the bias takes ``axes[1]``.
      dtype: compute dtype.
      precision: matmul precision (``None`` for the platform default).
      rngs: parameter initialisation stream.
      kernel_init: kernel initialiser (default truncated normal, std 0.02, as DINOv2/ViT-MAE).
    """
    return nnx.Linear(
        in_features,
        out_features,
        dtype=dtype,
        param_dtype=jnp.float32,
        precision=precision,
        kernel_init=kernel_init,
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": (axes[1],)},
        rngs=rngs,
    )


class VisionSelfAttention(nnx.Module):
    """Bidirectional multi-head self-attention with q, k, v and output projections (all with bias).

    Args:
      hidden_size: token width D.
      num_heads: number of heads; D must be divisible by it.
      dtype: compute dtype (parameters are float32).
      precision: matmul precision of the projections and of the attention products.
      rngs: parameter initialisation stream.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        precision: PrecisionLike = None,
        rngs: nnx.Rngs,
    ):
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}; "
                "choose a head count that divides the width"
            )
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.precision = precision
        kwargs = {"dtype": dtype, "precision": precision, "rngs": rngs}
        self.query = dense(hidden_size, hidden_size, ("embed", "heads"), **kwargs)
        self.key = dense(hidden_size, hidden_size, ("embed", "heads"), **kwargs)
        self.value = dense(hidden_size, hidden_size, ("embed", "heads"), **kwargs)
        self.out = dense(hidden_size, hidden_size, ("heads", "embed"), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Attend over the token axis.

        Args:
          x: tokens ``(B, N, D)``.

        Returns:
          ``(B, N, D)``.
        """
        batch, tokens, _ = x.shape
        split = (batch, tokens, self.num_heads, self.head_dim)
        q = self.query(x).reshape(split)
        k = self.key(x).reshape(split)
        v = self.value(x).reshape(split)
        with matmul_precision(self.precision):
            h = jax.nn.dot_product_attention(q, k, v)
        return self.out(h.reshape(batch, tokens, -1))
