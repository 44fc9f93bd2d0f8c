"""The mixed-precision policy shared by the DiT family, and the per-block remat policies.

One `Precision` object says which dtype each part of a network uses; every network of the
family (`~nnx_nets.DiT`, `~nnx_nets.MeanFlowDiT`, `~nnx_nets.LightningDiT`,
`~nnx_nets.DiTDH`, their trunk `~nnx_nets.PatchTransformer` and their blocks) takes it as
its ``precision`` argument, so no layer has a dtype flag of its own to set.

=================  =========  ==========  =============================================
part               float32    bfloat16    what
=================  =========  ==========  =============================================
``param_dtype``    float32    float32     master parameters (and so the gradients and
                                          the optimiser state, which follow them)
``compute_dtype``  float32    bfloat16    matmul inputs / outputs inside a block, the
                                          patch embedding, the label embedding
``residual_dtype`` float32    bfloat16    the token stream carried between blocks (what
                                          the backward pass stores under remat)
float32 always     --         --          norm statistics (`~nnx_nets.layer_norm`,
                                          `~nnx_nets.RMSNorm`), attention logits and
                                          softmax, the timestep embedding (sin-cos
                                          features and its MLP), the final layer's
                                          output, the loss
=================  =========  ==========  =============================================

This is the layout of the fast JAX trainers (Micikevicius et al. 2018, "Mixed precision
training": float32 master weights, half-precision activations, float32 reductions; Flax
``dtype`` / ``param_dtype``; MaxText's ``dtype: bfloat16`` with float32 weights). bfloat16 has
float32's exponent range, so no loss scaling is needed (Kalamkar et al. 2019).

`Precision.float32()` reproduces the float32 networks bit for bit.

Remat (rematerialisation, Chen et al. 2016) per block, `REMAT_POLICIES`:

- ``"none"``: keep every activation of every block for the backward pass (fastest, most
  memory);
- ``"dots_saveable"``: keep the outputs of the blocks' weight matmuls (q, k, v, out, the MLP
  layers, adaLN) and recompute the elementwise work and attention's logits / softmax,
  ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable`` (attention's batched
  ``q k^T`` would cost ``B * heads * N^2`` per block);
- ``"full"``: keep only each block's input; the backward pass reruns the whole block (about
  one third more compute).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

__all__ = [
    "PRECISION_NAMES",
    "REMAT_POLICIES",
    "Precision",
    "RematPolicy",
    "checkpointed",
    "remat_policy",
    "resolve_precision",
]

RematPolicy = Literal["none", "dots_saveable", "full"]
REMAT_POLICIES: tuple[str, ...] = ("none", "dots_saveable", "full")
PRECISION_NAMES: tuple[str, ...] = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class Precision:
    """Which dtype each part of a network computes in (see the module docstring's table).

    Attributes:
      name: the policy's name ("float32", "bfloat16", "float16").
      param_dtype: dtype of the master parameters (float32 in every policy).
      compute_dtype: matmul inputs and activations inside a block.
      residual_dtype: the token stream between blocks.
    """

    name: str = "float32"
    param_dtype: jnp.dtype = jnp.float32
    compute_dtype: jnp.dtype = jnp.float32
    residual_dtype: jnp.dtype = jnp.float32

    def __post_init__(self) -> None:
        for field in ("param_dtype", "compute_dtype", "residual_dtype"):  # one spelling each
            object.__setattr__(self, field, jnp.dtype(getattr(self, field)))

    @classmethod
    def float32(cls) -> Precision:
        """Everything float32: the reference numbers, bit for bit."""
        return cls()

    @classmethod
    def mixed(cls, dtype: jnp.dtype = jnp.bfloat16) -> Precision:
        """float32 master parameters, ``dtype`` matmuls and activations between blocks."""
        name = jnp.dtype(dtype).name
        return cls(name=name, compute_dtype=jnp.dtype(dtype), residual_dtype=jnp.dtype(dtype))

    @property
    def is_float32(self) -> bool:
        """True when nothing is computed below float32."""
        return jnp.dtype(self.compute_dtype) == jnp.float32 == jnp.dtype(self.residual_dtype)


def resolve_precision(value: Precision | str) -> Precision:
    """A `Precision` from itself or from a name of `PRECISION_NAMES`.

    "float32" is `Precision.float32`; "bfloat16" / "float16" are `Precision.mixed` with that
    half-precision dtype.
    """
    if isinstance(value, Precision):
        return value
    name = jnp.dtype(value).name if not isinstance(value, str) else value
    if name not in PRECISION_NAMES:
        raise ValueError(
            f"unknown precision {value!r}; valid: a Precision object or one of "
            f"{', '.join(PRECISION_NAMES)}"
        )
    return Precision.float32() if name == "float32" else Precision.mixed(jnp.dtype(name))


def remat_policy(remat: RematPolicy | bool) -> RematPolicy:
    """The remat policy name for ``remat``; booleans mean "full" (True) and "none" (False)."""
    if isinstance(remat, bool):
        return "full" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise ValueError(
            f"unknown remat policy {remat!r}; valid: {', '.join(REMAT_POLICIES)} (or a bool)"
        )
    return remat


def checkpointed(fn: Callable, remat: RematPolicy | bool) -> Callable:
    """``fn`` under ``jax.checkpoint`` with the saving rule of ``remat`` (identity for "none")."""
    match remat_policy(remat):
        case "none":
            return fn
        case "full":
            return jax.checkpoint(fn)
        case _:
            policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
            return jax.checkpoint(fn, policy=policy)
