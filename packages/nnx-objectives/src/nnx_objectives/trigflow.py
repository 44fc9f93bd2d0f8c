"""TrigFlow (Lu & Song 2024, sCM, Sec. 2-4) written in our time convention.

TrigFlow corrupts data ``x0`` (standard deviation ``sigma_d``) as
``x_s = cos(s) x0 + sin(s) z`` with ``z ~ N(0, sigma_d^2 I)`` and the angle ``s`` in
[0, pi/2]. In our convention (``t`` in [0, 1], 0 = data, 1 = noise) this is the GVP path at
``t = 2 s / pi`` on data scaled to unit deviation: ``x_s / sigma_d = cos(pi t/2) (x0 / sigma_d)
+ sin(pi t/2) eps``. So

    s = pi t / 2,   x_t (TrigFlow state) = cos(s) x0 + sin(s) sigma_d eps.

The network follows our protocol, ``model(x_t / sigma_d, t, y) -> F`` with our ``t``; sCM's
time input ``c_noise(s) = s`` is ``(pi / 2) t``, which a network absorbs through its
``time_scale``. ``F`` is the TrigFlow velocity in data-deviation units: the diffusion target
is ``F* = E[dx_s/ds | x_s] / sigma_d = E[cos(s) eps - sin(s) x0 / sigma_d | x_s]``, i.e.
``(2 / pi)`` times the GVP velocity ``dx/dt`` of the scaled data.

The consistency function (sCM Eq. 4, with the TrigFlow parameterisation) maps ``x_s`` to the
clean data along the probability-flow ODE:

    f(x_s, s) = cos(s) x_s - sin(s) sigma_d F(x_s / sigma_d, t, y).

One-step sampling is ``f(sigma_d eps, t = 1) = -sigma_d F(eps, 1, y)``.

The proposal (sCM Sec. 4.2): ``tau ~ N(P_mean, P_std^2)``, ``s = arctan(e^tau / sigma_d)``,
i.e. EDM's log-normal noise level ``sigma_E = e^tau`` mapped by ``tan(s) = sigma_E / sigma_d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import ndtri

from nnx_objectives.protocols import Network
from nnx_samplers import expand_time

__all__ = ["TrigFlowTime", "trigflow_angle", "trigflow_consistency_function", "trigflow_state"]


def trigflow_angle(t: Array) -> Array:
    """TrigFlow's angle ``s = pi t / 2`` of our time ``t`` (0 = data, 1 = noise)."""
    return 0.5 * math.pi * jnp.asarray(t)


def trigflow_state(x0: Array, eps: Array, t: Array, sigma_data: float) -> Array:
    """``x_s = cos(s) x0 + sin(s) sigma_d eps`` at ``s = pi t / 2``.

    Args:
      x0: ``(B, ...)`` data with standard deviation about ``sigma_data``.
      eps: ``(B, ...)`` standard normal noise.
      t: scalar or ``(B,)`` time, 0 = data, 1 = noise.
      sigma_data: the data's standard deviation.
    """
    s = expand_time(trigflow_angle(t), x0)
    return jnp.cos(s) * x0 + jnp.sin(s) * sigma_data * eps


def trigflow_consistency_function(
    model: Network, x_s: Array, t: Array, y: Array, *, sigma_data: float
) -> Array:
    """``f(x_s, s) = cos(s) x_s - sin(s) sigma_d F(x_s / sigma_d, t, y)`` (sCM Eq. 4, TrigFlow).

    Args:
      model: ``model(x / sigma_d, t, y) -> F``.
      x_s: ``(B, ...)`` TrigFlow state.
      t: scalar or ``(B,)`` time, 0 = data, 1 = noise (``s = pi t / 2``).
      y: ``(B,)`` labels.
      sigma_data: the data's standard deviation.

    Returns:
      ``(B, ...)`` the clean-data estimate.
    """
    t = jnp.broadcast_to(jnp.asarray(t, dtype=jnp.float32), (x_s.shape[0],))
    s = expand_time(trigflow_angle(t), x_s)
    f_out = model(x_s / sigma_data, t, y).astype(jnp.float32)
    return jnp.cos(s) * x_s - jnp.sin(s) * sigma_data * f_out


@dataclass(frozen=True)
class TrigFlowTime:
    """sCM's proposal in our time: ``t = (2 / pi) arctan(exp(N(P_mean, P_std^2)) / sigma_d)``.

    Attributes:
      P_mean: mean of ``ln sigma_E`` (sCM CIFAR-10: -1.0; ImageNet 512: -0.8).
      P_std: deviation of ``ln sigma_E`` (sCM CIFAR-10: 1.4; ImageNet 512: 1.6).
      sigma_data: the data's standard deviation (0.5).
    """

    P_mean: float = -1.0
    P_std: float = 1.4
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        if self.P_std <= 0 or self.sigma_data <= 0:
            raise ValueError(
                f"P_std and sigma_data must be positive, got {self.P_std}, {self.sigma_data}."
            )

    def _from_normal(self, normal: Array) -> Array:
        return (2.0 / math.pi) * jnp.arctan(
            jnp.exp(self.P_mean + self.P_std * normal) / self.sigma_data
        )

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array:
        return self._from_normal(jax.random.normal(key, shape, dtype=jnp.float32))

    def quantile(self, u: Array) -> Array:
        return self._from_normal(ndtri(jnp.asarray(u, dtype=jnp.float32)))
