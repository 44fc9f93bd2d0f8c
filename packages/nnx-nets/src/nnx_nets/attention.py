"""Multi-head self-attention of the DiT family, through ``jax.nn.dot_product_attention``.

softmax(q k^T / sqrt(d_head)) v (Vaswani et al. 2017, eq. 1). Queries, keys and values
are separate projections (checkpoints with a fused ``qkv`` weight are split by the
conversion specs), so that each one carries the ``heads`` logical axis cleanly. Logits
and softmax are float32 inside ``jax.nn.dot_product_attention`` whatever the compute
dtype. The implementation is chosen by the backend (`attention_implementation`): cuDNN's
fused flash attention (Dao 2023) on a GPU when the inputs are bfloat16 / float16 and the head
width is one cuDNN takes, the XLA einsum-softmax-einsum path elsewhere (CPU, TPU, float32).
On CPU this is the same computation as before: the float32 policy's outputs are bitwise
unchanged (``tests/test_precision.py``).

Context parallelism (sequence sharding) gathers keys and values: queries stay split along the
token axis (``("batch", "seq", "heads", None)``) while keys and values are constrained to the
full sequence (``("batch", None, "heads", None)``), so under a rule table that maps ``seq`` to
a mesh axis the compiler all-gathers K and V across it and each device computes the logits,
softmax and weighted sum of its own N / s queries against all N keys: attention FLOPs split
s ways, at the cost of K/V memory of the full sequence per device (fine at DiT's 256-1024
tokens; ring attention (Liu et al. 2023) would bound it for much longer sequences). The
gradient of K and V is reduce-scattered back. Outside a sharding context every constraint is
the identity (see `nnx_nets.activation_axes`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnx_nets.activation_axes import constrain_activation
from nnx_nets.initializers import xavier_uniform
from nnx_nets.norms import RMSNorm
from nnx_nets.rope import apply_rope

_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def attention_implementation(dtype: jnp.dtype, head_dim: int) -> str:
    """``"cudnn"`` on a GPU for half-precision inputs with ``head_dim <= 128`` divisible by 8
    (cuDNN flash attention's constraints), else ``"xla"``."""
    cudnn_ok = jnp.dtype(dtype) in _CUDNN_DTYPES and head_dim <= 128 and head_dim % 8 == 0
    return "cudnn" if cudnn_ok and jax.default_backend() == "gpu" else "xla"


def _projection(in_features: int, out_features: int, axes, *, bias, dtype, rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        dtype=dtype,
        kernel_init=xavier_uniform,
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": (axes[1],)},
        rngs=rngs,
    )


class SelfAttention(nnx.Module):
    """Self-attention with optional per-head RMS QK-norm and optional 2-D RoPE.

    Args:
      hidden_size: token width ``D``.
      num_heads: number of heads; ``D`` must be divisible by it.
      qkv_bias: biases on the q, k, v projections (True in DiT and LightningDiT).
      qk_norm: if True, separate RMSNorm modules ``q_norm`` and ``k_norm`` over each
        head's channels (LightningDiT's ``use_qknorm`` with ``use_rmsnorm``).
      dtype: compute dtype of the projections.
      rngs: initialisation (xavier-uniform weights, zero biases).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        proj = dict(bias=qkv_bias, dtype=dtype, rngs=rngs)
        self.query = _projection(hidden_size, hidden_size, ("embed", "heads"), **proj)
        self.key = _projection(hidden_size, hidden_size, ("embed", "heads"), **proj)
        self.value = _projection(hidden_size, hidden_size, ("embed", "heads"), **proj)
        self.out = _projection(
            hidden_size, hidden_size, ("heads", "embed"), bias=True, dtype=dtype, rngs=rngs
        )
        self.q_norm = RMSNorm(self.head_dim, rngs=rngs) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, rngs=rngs) if qk_norm else None

    def __call__(
        self,
        x: jax.Array,
        rope: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        is_causal: bool = False,
    ) -> jax.Array:
        """Attend over ``x: (B, N, D)``; ``rope`` is ``(cos, sin)`` of shape ``(N, head_dim)``;
        ``is_causal`` lets token ``i`` see tokens ``j <= i`` only (a video's temporal mask).

        Returns ``(B, N, D)`` in the compute dtype.
        """
        batch, tokens, _ = x.shape
        shape = (batch, tokens, self.num_heads, self.head_dim)
        q = self.query(x).reshape(shape)
        k = self.key(x).reshape(shape)
        v = self.value(x).reshape(shape)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q = constrain_activation(q, ("batch", "seq", "heads", None))
        # Full key / value sequences on every device of a sequence group (the all-gather).
        k = constrain_activation(k, ("batch", None, "heads", None))
        v = constrain_activation(v, ("batch", None, "heads", None))
        implementation = attention_implementation(q.dtype, self.head_dim)
        out = jax.nn.dot_product_attention(
            q, k, v, is_causal=is_causal, implementation=implementation
        )
        out = constrain_activation(out.reshape(batch, tokens, -1), ("batch", "seq", "heads"))
        return self.out(out)
