"""Euler-Maruyama for the reverse SDE, with the score taken from the same velocity evaluation.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise; steps go from ``t``
to ``t_next < t`` (``dt < 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.adapters import score_from_velocity
from nnx_samplers.diffusion import Diffusion, SigmaDiffusion
from nnx_samplers.fields import VectorField
from nnx_samplers.paths import LinearPath, Path

__all__ = ["EulerMaruyama"]


@dataclass(frozen=True)
class EulerMaruyama:
    """Euler-Maruyama on ``dx = [v - D(t) score] dt + sqrt(2 D(t)) dW`` (SiT, Ma et al. 2024).

    Per step, with ``dt = t_next - t < 0``::

        v = f(x, t);  score = -eps(x, v, t) / sigma(t)   (linear: -(x + (1 - t) v) / t)
        x <- x + (v - D(t) score) dt + sqrt(2 D(t) |dt|) z,   z ~ N(0, I)

    One field evaluation per step (a guided field guides every step, the last one too). The
    step that ends at ``t = 0`` adds no noise (SiT's "Mean" last step), so the sample is
    finite and noise-free; the score is never evaluated at ``t = 0``.

    Attributes:
      diffusion: ``D(t)``; SiT's headline is ``SigmaDiffusion()`` (``D = sigma(t)``).
      path: interpolation path, used to get the score from the velocity.
    """

    diffusion: Diffusion = field(default_factory=SigmaDiffusion)
    path: Path = field(default_factory=LinearPath)

    def init(self, field: VectorField, x: Array, times: Array) -> tuple[()]:
        return ()

    def step(
        self,
        field: VectorField,
        x: Array,
        state: tuple[()],
        t: Array,
        t_next: Array,
        key: Array | None,
    ) -> tuple[Array, tuple[()], Array]:
        if key is None:
            raise ValueError(
                "EulerMaruyama is stochastic: pass key=jax.random.key(seed) to sample()."
            )
        dt = t_next - t
        velocity = field(x, t)
        score = score_from_velocity(x, velocity, t, self.path)
        strength = self.diffusion(t)
        mean = x + (velocity - strength * score) * dt
        noise = jnp.sqrt(2.0 * strength * jnp.abs(dt)) * jax.random.normal(key, x.shape, mean.dtype)
        x_next = jnp.where(t_next == 0, mean, mean + noise)
        return x_next, state, jnp.int32(1)
