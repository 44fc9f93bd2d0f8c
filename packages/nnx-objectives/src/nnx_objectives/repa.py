"""REPA (Yu et al. 2025): align a backbone's hidden tokens with a frozen encoder's patch tokens.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise (REPA's own code uses the same linear
path ``x_t = (1 - t) x0 + t eps``). The loss (REPA Eq. 8) adds to the flow loss

    lambda * mean_tokens( -cos( h_phi(f(x_t)[depth]), sg(E(images)) ) ),

where ``f(x_t)[depth]`` are the backbone's tokens after block ``depth`` (1-indexed; 8 for
SiT-XL/2), ``h_phi`` is a projector MLP ``Linear-SiLU-Linear-SiLU-Linear`` (hidden 2048) and
``E`` is the frozen encoder (DINOv2-B patch tokens without CLS). ``lambda = 0.5``.

The encoder is any callable ``images -> (B, N_e, D_e)`` tokens, e.g.
``lambda x: dinov2(x)["patch_tokens"]`` from nnx-nets; it sees ``images`` (default: ``x0``;
pass the pixel images when ``x0`` are VAE latents, already resized and normalised the way the
encoder expects, e.g. bicubic to 224 px for 256 px images). Its output is wrapped in
``stop_gradient``, so no gradient reaches it even when its parameters sit in the
differentiated module tree. When ``N_e`` differs from the backbone's token count, the
encoder's token grid is resized bilinearly (antialiased when shrinking) to the backbone's
grid; both grids must be square. Both token sets are normalised in float32 (REPA's fp16 NaNs
came from this normalisation in half precision).

Precomputed encoder tokens: pass them as ``images`` with ``encoder=lambda tokens: tokens``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from nnx_objectives.interpolant import InterpolantObjective
from nnx_samplers import interpolate

__all__ = [
    "REPAModel",
    "REPAObjective",
    "REPAProjector",
    "negative_cosine_similarity",
    "resize_token_grid",
]


class REPAProjector(nnx.Module):
    """REPA's projector ``Linear-SiLU-Linear-SiLU-Linear`` applied to every token.

    Args:
      in_features: backbone width ``D``.
      hidden_features: projector width (2048 in REPA).
      out_features: encoder width ``D_e`` (768 for DINOv2-B).
      dtype: compute dtype (parameters stay float32).
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        *,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        def linear(d_in: int, d_out: int, axes: tuple[str | None, str | None]) -> nnx.Linear:
            return nnx.Linear(
                d_in,
                d_out,
                dtype=dtype,
                kernel_metadata={"logical_axes": axes},
                bias_metadata={"logical_axes": (axes[1],)},
                rngs=rngs,
            )

        self.fc1 = linear(in_features, hidden_features, ("embed", "mlp"))
        self.fc2 = linear(hidden_features, hidden_features, (None, "mlp"))
        self.fc3 = linear(hidden_features, out_features, ("mlp", None))

    def __call__(self, tokens: Array) -> Array:
        """``(B, N, D) -> (B, N, D_e)``."""
        hidden = nnx.silu(self.fc1(tokens))
        hidden = nnx.silu(self.fc2(hidden))
        return self.fc3(hidden)


class REPAModel(nnx.Module):
    """A backbone plus REPA's projector on its tokens after block ``depth``.

    The backbone follows the nnx-nets contract: ``backbone(x_t, t, y)`` returns the output and
    ``backbone(x_t, t, y, return_features=True)`` returns ``(output, features)`` with
    ``features[f"block_{i}"]`` ``(B, N, D)`` after block ``i`` (1-indexed). ``REPAModel`` is
    itself a network: ``__call__`` forwards to the backbone (sampling needs no projector).

    Args:
      backbone: the network (DiT / SiT / LightningDiT from nnx-nets, or any such module).
      depth: which block's tokens to project, 1-indexed (REPA: 8 for SiT-XL/2; DiffuseNNX
        ships 4).
      backbone_width: the token width ``D`` of the backbone.
      encoder_width: the encoder's token width ``D_e``.
      projector_width: hidden width of the projector (2048).
      dtype: compute dtype of the projector.
      rngs: ``nnx.Rngs`` for the projector.
    """

    def __init__(
        self,
        backbone: nnx.Module,
        *,
        depth: int,
        backbone_width: int,
        encoder_width: int,
        projector_width: int = 2048,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if depth < 1:
            raise ValueError(f"depth counts blocks from 1, got {depth}.")
        self.backbone = backbone
        self.depth = depth
        self.projector = REPAProjector(
            backbone_width, projector_width, encoder_width, dtype=dtype, rngs=rngs
        )

    def __call__(self, x_t: Array, t: Array, y: Array) -> Array:
        return self.backbone(x_t, t, y)

    def project(self, x_t: Array, t: Array, y: Array) -> tuple[Array, Array]:
        """One backbone pass: ``(output, projected tokens (B, N, D_e))``."""
        out, features = self.backbone(x_t, t, y, return_features=True)
        name = f"block_{self.depth}"
        if name not in features:
            raise KeyError(
                f"the backbone returned no {name!r}; it has {sorted(features)}. Choose a depth "
                "between 1 and the backbone's number of blocks."
            )
        return out, self.projector(features[name])


def resize_token_grid(tokens: Array, num_tokens: int) -> Array:
    """Resize a square token grid ``(B, N, D)`` to ``(B, num_tokens, D)``.

    Tokens are flattened row-major over ``(h, w)``; the grid is resized bilinearly
    (``jax.image.resize``, antialiased when shrinking). Identity when the counts match.
    """
    batch, count, width = tokens.shape
    if count == num_tokens:
        return tokens
    side_in, side_out = math.isqrt(count), math.isqrt(num_tokens)
    if side_in**2 != count or side_out**2 != num_tokens:
        raise ValueError(
            f"cannot resize {count} encoder tokens to {num_tokens} backbone tokens: both "
            "must be square grids. Resize the encoder's input so its grid matches."
        )
    grid = jnp.reshape(tokens.astype(jnp.float32), (batch, side_in, side_in, width))
    grid = jax.image.resize(grid, (batch, side_out, side_out, width), method="linear")
    return jnp.reshape(grid, (batch, num_tokens, width))


def negative_cosine_similarity(projected: Array, target: Array) -> Array:
    """Per-example ``mean_tokens(-cos(projected, target))`` in float32: ``(B, N, D) x2 -> (B,)``."""
    projected = projected.astype(jnp.float32)
    target = target.astype(jnp.float32)
    projected = projected / jnp.maximum(jnp.linalg.norm(projected, axis=-1, keepdims=True), 1e-6)
    target = target / jnp.maximum(jnp.linalg.norm(target, axis=-1, keepdims=True), 1e-6)
    return -jnp.mean(jnp.sum(projected * target, axis=-1), axis=-1)


@dataclass(frozen=True)
class REPAObjective:
    """REPA: a flow objective plus ``coefficient * mean_tokens(-cos)`` alignment.

    ``objective(model, x0, y, key, *, images=None)`` with a ``REPAModel``. The flow part is
    ``flow`` (REPA: linear path, velocity, uniform ``t``); it shares the backbone pass with the
    alignment. ``aux["alignment"]`` is the per-example ``mean(-cos)`` in [-1, 1].

    Attributes:
      encoder: frozen encoder, ``images -> (B, N_e, D_e)`` tokens.
      coefficient: ``lambda`` (0.5).
      flow: the interpolant objective used for the flow loss.
    """

    encoder: Any
    coefficient: float = 0.5
    flow: InterpolantObjective = field(default_factory=InterpolantObjective)

    def __call__(
        self,
        model: REPAModel,
        x0: Array,
        y: Array,
        key: Array,
        *,
        images: Array | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        if not hasattr(model, "project"):
            raise TypeError(
                f"REPAObjective needs a REPAModel (with .project), got {type(model).__name__}; "
                "wrap the backbone: REPAModel(backbone, depth=..., backbone_width=..., "
                "encoder_width=..., rngs=rngs)."
            )
        t, eps = self.flow.sample(key, x0)
        x_t = interpolate(self.flow.path, x0, eps, t)
        out, projected = model.project(x_t, t, y)
        flow_loss, aux = self.flow.loss_from_output(out, x0, eps, t)
        target = jax.lax.stop_gradient(self.encoder(x0 if images is None else images))
        if target.ndim != 3 or target.shape[0] != x0.shape[0]:
            raise ValueError(
                f"the encoder must return (batch, tokens, width) tokens, got {target.shape}."
            )
        target = resize_token_grid(target, projected.shape[1])
        if target.shape[-1] != projected.shape[-1]:
            raise ValueError(
                f"the projector outputs width {projected.shape[-1]} but the encoder tokens have "
                f"width {target.shape[-1]}; set encoder_width={target.shape[-1]} in REPAModel."
            )
        alignment = negative_cosine_similarity(projected, target)
        loss = flow_loss + self.coefficient * alignment
        return loss, {**aux, "flow_loss": flow_loss, "alignment": alignment}
