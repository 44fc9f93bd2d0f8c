"""First-order solvers: Euler for a velocity field, EulerJump for a two-time (MeanFlow) field.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise; steps go from ``t``
to ``t_next < t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import TwoTimeField, VectorField

__all__ = ["Euler", "EulerJump"]


@dataclass(frozen=True)
class Euler:
    """Explicit Euler: ``x <- x + (t_next - t) f(x, t)``; first order, 1 NFE per step."""

    def init(self, field: VectorField, x: Array, times: Array) -> tuple[()]:
        return ()

    def step(
        self, field: VectorField, x: Array, state: tuple[()], t: Array, t_next: Array, key=None
    ) -> tuple[Array, tuple[()], Array]:
        return x + (t_next - t) * field(x, t), state, jnp.int32(1)


@dataclass(frozen=True)
class EulerJump:
    """MeanFlow's jump (Geng et al. 2025): ``x_r = x_t + (r - t) u(x_t, r, t)`` with ``r = t_next``.

    The field is two-time, ``u(x, r, t)``. One step from ``t = 1`` to ``r = 0`` is one-step
    generation (``UniformGrid(1)``); two steps are ``UniformGrid(2)`` or any 3-point grid.
    1 NFE per step.
    """

    def init(self, field: TwoTimeField, x: Array, times: Array) -> tuple[()]:
        return ()

    def step(
        self, field: TwoTimeField, x: Array, state: tuple[()], t: Array, t_next: Array, key=None
    ) -> tuple[Array, tuple[()], Array]:
        return x + (t_next - t) * field(x, t_next, t), state, jnp.int32(1)
