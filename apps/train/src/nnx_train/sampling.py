"""Generation from a trained network: noise -> guidance wrapper -> velocity field -> solver.

Time convention: ``t`` in [0, 1], ``t = 0`` data, ``t = 1`` noise; sampling integrates from the
grid's first time (1, or ``t_0 < 1`` for the EDM grid, starting from ``t_0 * eps`` as the
linear path requires) down to 0. Guidance is nnx-samplers' `ClassifierFreeGuidance`
(conditional and null passes in one doubled batch, explicit null label, optional interval);
networks that predict noise, x0 or score go through nnx-samplers' velocity adapters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["GuidanceSpec", "make_flow_generate", "make_meanflow_generate"]


@dataclasses.dataclass(frozen=True)
class GuidanceSpec:
    """Classifier-free guidance settings.

    Attributes:
      scale: guidance weight ``w`` (1 = conditional only, no second pass).
      interval: ``(t_lo, t_hi)`` where guidance applies, or ``None`` for every step.
      guided_channels: ``None`` guides every channel; ``3`` reproduces DiT / SiT (3 of 4
        latent channels) and LightningDiT (3 of 32).
      null_label: the unconditional label (``num_classes``).
    """

    scale: float
    interval: tuple[float, float] | None
    guided_channels: int | None
    null_label: int


def _prediction(network: Callable, labels: jax.Array, guidance: GuidanceSpec | None) -> Callable:
    import nnx_samplers as sp

    if guidance is None or guidance.scale == 1.0:
        return sp.ConditionalField(network, labels)
    interval = None
    if guidance.interval is not None and tuple(guidance.interval) != (0.0, 1.0):
        interval = sp.GuidanceInterval(*guidance.interval)
    return sp.ClassifierFreeGuidance(
        model=network,
        labels=labels,
        null_label=guidance.null_label,
        scale=guidance.scale,
        interval=interval,
        guided_channels=guidance.guided_channels,
    )


def make_flow_generate(
    *,
    solver: Any,
    grid: Any,
    guidance: GuidanceSpec | None,
    data_shape: tuple[int, ...],
    to_velocity: Callable[[Callable], Callable],
    network_of: Callable[[Any], Callable] = lambda model: model,
) -> Callable[[Any, Any, jax.Array, jax.Array], jax.Array]:
    """``generate(model, frozen, labels, key) -> (B, *data_shape)`` samples.

    Args:
      solver: an nnx-samplers solver.
      grid: an nnx-samplers time grid.
      guidance: CFG settings or ``None``.
      data_shape: ``(H, W, C)`` of one sample.
      to_velocity: wraps a prediction ``g(x, t)`` into a velocity field (identity for velocity
        networks, ``VelocityFromNoise`` ... otherwise).
      network_of: extracts the ``(x_t, t, y)`` network from the trained module (e.g. drop a
        learned-sigma half).
    """
    import nnx_samplers as sp

    def generate(model: Any, frozen: Any, labels: jax.Array, key: jax.Array) -> jax.Array:
        del frozen
        key_noise, key_solver = jax.random.split(key)
        labels = jnp.asarray(labels, jnp.int32)
        noise = jax.random.normal(key_noise, (labels.shape[0], *data_shape), jnp.float32)
        t_start = jnp.asarray(grid.times())[0]
        field = to_velocity(_prediction(network_of(model), labels, guidance))
        return sp.sample(field, t_start * noise, solver, grid, key=key_solver).sample

    return generate


def make_meanflow_generate(
    *, grid: Any, data_shape: tuple[int, ...]
) -> Callable[[Any, Any, jax.Array, jax.Array], jax.Array]:
    """MeanFlow's jump sampler: ``x_r = x_t + (r - t) u(x_t, r, t | y)`` along ``grid``.

    Guidance is folded into MeanFlow training, so the field is the plain conditional one.
    """
    import nnx_samplers as sp

    def generate(model: Any, frozen: Any, labels: jax.Array, key: jax.Array) -> jax.Array:
        del frozen
        labels = jnp.asarray(labels, jnp.int32)
        noise = jax.random.normal(key, (labels.shape[0], *data_shape), jnp.float32)
        field = sp.ConditionalTwoTimeField(model, labels)
        return sp.sample(field, noise, sp.EulerJump(), grid).sample

    return generate
