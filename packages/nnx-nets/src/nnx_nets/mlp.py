"""Feed-forward layers of the DiT family: GELU-tanh MLP (DiT) and SwiGLU (LightningDiT).

On token sequences ``(B, N, D)`` the hidden state is constrained to
``("batch", "seq", "mlp")`` (identity outside a sharding context, see
`nnx_nets.activation_axes`), so sequence sharding splits the MLP by tokens and tensor
sharding by hidden units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets.activation_axes import constrain_activation
from nnx_nets.initializers import xavier_uniform

_HIDDEN_AXES = ("batch", "seq", "mlp")


def _constrain_hidden(h: jax.Array) -> jax.Array:
    return constrain_activation(h, _HIDDEN_AXES) if h.ndim == len(_HIDDEN_AXES) else h


def _linear(in_features: int, out_features: int, axes, *, dtype, rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        dtype=dtype,
        kernel_init=xavier_uniform,
        kernel_metadata={"logical_axes": axes},
        bias_metadata={"logical_axes": (axes[1],)},
        rngs=rngs,
    )


class Mlp(nnx.Module):
    """fc2(GELU_tanh(fc1(x))), the transformer MLP of DiT (timm ``Mlp``).

    Args:
      hidden_size: width ``D``.
      mlp_size: inner width (``int(D * mlp_ratio)``, 4D in DiT).
      dtype: compute dtype.
      rngs: initialisation.
    """

    def __init__(
        self, hidden_size: int, mlp_size: int, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs
    ) -> None:
        self.fc1 = _linear(hidden_size, mlp_size, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.fc2 = _linear(mlp_size, hidden_size, ("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(..., D) -> (..., D)``."""
        return self.fc2(_constrain_hidden(jax.nn.gelu(self.fc1(x), approximate=True)))


def swiglu_hidden_size(hidden_size: int, mlp_ratio: float = 4.0) -> int:
    """LightningDiT's SwiGLU width: ``int(2/3 * int(D * mlp_ratio))`` (3072 for D = 1152)."""
    return int(2 / 3 * int(hidden_size * mlp_ratio))


class SwiGLU(nnx.Module):
    """down(SiLU(gate(x)) * up(x)) (Shazeer 2020, eq. 6 with Swish_1).

    Upstream fuses ``gate`` and ``up`` into one ``w12`` weight (gate rows first); the
    conversion specs split it, so that each half carries the ``mlp`` logical axis.

    Args:
      hidden_size: width ``D``.
      mlp_size: inner width, see :func:`swiglu_hidden_size`.
      dtype: compute dtype.
      rngs: initialisation.
    """

    def __init__(
        self, hidden_size: int, mlp_size: int, *, dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs
    ) -> None:
        self.gate = _linear(hidden_size, mlp_size, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.up = _linear(hidden_size, mlp_size, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.down = _linear(mlp_size, hidden_size, ("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(..., D) -> (..., D)``."""
        return self.down(_constrain_hidden(jax.nn.silu(self.gate(x)) * self.up(x)))
