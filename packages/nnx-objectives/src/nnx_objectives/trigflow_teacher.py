"""A linear-path velocity network read as a TrigFlow network (sCD from flow-matching teachers).

Lu & Song 2024 (sCM, Sec. 2) note that every diffusion model with an affine path is a TrigFlow
model after a change of time and scale. For a network trained on the linear path
``x_t' = (1 - t') x0 + t' eps`` with velocity ``v = eps - x0`` (our time: 0 = data,
1 = noise), the TrigFlow state ``x_s = cos(s) x0 + sin(s) sigma_d eps`` (``s = pi t / 2``)
is the linear state

    x_t' = x_s / c,   c = cos(s) + sigma_d sin(s),   t' = sigma_d sin(s) / c,

so the network gives ``x0_hat = x_t' - t' v`` and ``eps_hat = x_t' + (1 - t') v``, and the
TrigFlow output is ``F = cos(s) eps_hat - sin(s) x0_hat / sigma_d`` (the target of
``nnx_objectives.trigflow``). Then ``f = cos(s) x_s - sin(s) sigma_d F`` equals ``x0_hat``
at ``t = 1`` and ``x_s`` at ``t = 0``, as a consistency function must.

`LinearVelocityAsTrigFlow` wraps a network this way; it serves as sCD's teacher
(``TeacherTangent``) and, around a trainable copy of the teacher, as the student that starts
from the teacher (sCM initialises sCD students from the teacher).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax import Array

from nnx_samplers import expand_time

__all__ = ["LinearVelocityAsTrigFlow"]


class LinearVelocityAsTrigFlow(nnx.Module):
    """``F(x_s / sigma_d, t, y)`` from a linear-path velocity network ``v(x_t', t', y)``.

    Args:
      network: ``network(x_t', t', y) -> v`` on the linear path (0 = data, 1 = noise).
      sigma_data: the data's standard deviation of the TrigFlow parameterisation.
    """

    def __init__(self, network: Any, *, sigma_data: float) -> None:
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}.")
        self.network = network
        self.sigma_data = sigma_data

    def __call__(self, x_scaled: Array, t: Array, y: Array) -> Array:
        """``x_scaled = x_s / sigma_d`` ``(B, ...)``, ``t`` ``(B,)`` -> ``F`` ``(B, ...)`` float32."""
        sigma_d = self.sigma_data
        s = 0.5 * math.pi * jnp.asarray(t, jnp.float32)
        cos, sin = jnp.cos(s), jnp.sin(s)
        c = cos + sigma_d * sin
        t_lin = sigma_d * sin / c
        x_lin = sigma_d * x_scaled / expand_time(c, x_scaled)
        v = self.network(x_lin, t_lin, y).astype(jnp.float32)
        t_e = expand_time(t_lin, x_lin)
        x0_hat = x_lin - t_e * v
        eps_hat = x_lin + (1.0 - t_e) * v
        return expand_time(cos, x_lin) * eps_hat - expand_time(sin, x_lin) * x0_hat / sigma_d
