"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2), run on a linear-path velocity field.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise. EDM works with
``x_E = x0 + sigma_E eps``; on the linear path ``sigma_E = t / (1 - t)`` and
``x_E = x_t / (1 - t)``, and EDM's ODE direction ``dx_E / dsigma_E = (x_E - D) / sigma_E``
equals the noise prediction ``eps = x_t + (1 - t) v``. The step is taken in EDM's variables,
so with the same sigma grid the iterates are EDM's exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.adapters import edm_from_linear, linear_from_edm, noise_from_velocity
from nnx_samplers.fields import VectorField

__all__ = ["EDMStochastic"]


@dataclass(frozen=True)
class EDMStochastic:
    """EDM's stochastic Heun sampler with churn (Karras et al. 2022, Alg. 2).

    For each step from ``sigma`` to ``sigma_next`` (EDM noise levels of ``t``, ``t_next``)::

        gamma = min(s_churn / N, sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0
        sigma_hat = sigma (1 + gamma)
        x_hat = x_E + sqrt(sigma_hat^2 - sigma^2) s_noise z
        d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat             # = eps prediction
        x_next = x_hat + (sigma_next - sigma_hat) d
        if sigma_next > 0: Heun correction with d' at (x_next, sigma_next)

    With ``s_churn = 0`` it is EDM's deterministic Heun sampler (Alg. 1): 2N - 1 NFE.
    ``s_tmin`` and ``s_tmax`` are EDM noise levels (as in the paper), not times. The grid
    must start below ``t = 1`` (``sigma_E`` is infinite there): use ``EDMGrid``.
    ImageNet-64 used s_churn 40, s_tmin 0.05, s_tmax 50, s_noise 1.003
    (Karras et al. 2022, Table 5; unverified).

    Attributes:
      s_churn: total amount of stochasticity; 0 is deterministic.
      s_tmin: smallest EDM sigma at which noise is added.
      s_tmax: largest EDM sigma at which noise is added.
      s_noise: inflation of the added noise's standard deviation.
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if self.s_churn < 0 or self.s_noise < 0 or self.s_tmin > self.s_tmax:
            raise ValueError(
                "EDMStochastic needs s_churn >= 0, s_noise >= 0 and s_tmin <= s_tmax; got "
                f"s_churn={self.s_churn}, s_noise={self.s_noise}, s_tmin={self.s_tmin}, "
                f"s_tmax={self.s_tmax}."
            )

    def init(self, field: VectorField, x: Array, times: Array) -> Array:
        if not isinstance(times, jax.core.Tracer) and times.tolist()[0] >= 1.0:
            raise ValueError(
                "EDMStochastic needs a grid that starts below t = 1 (EDM's sigma is infinite "
                "there); use EDMGrid(num_steps, sigma_max=80.0) and start from t_0 * eps."
            )
        num_steps = times.shape[0] - 1
        return jnp.asarray(min(self.s_churn / num_steps, math.sqrt(2.0) - 1.0), times.dtype)

    def step(
        self,
        field: VectorField,
        x: Array,
        state: Array,
        t: Array,
        t_next: Array,
        key: Array | None,
    ) -> tuple[Array, Array, Array]:
        gamma_max = state
        x_edm, sigma = edm_from_linear(x, t)
        _, sigma_next = edm_from_linear(x, t_next)
        gamma = jnp.where((sigma >= self.s_tmin) & (sigma <= self.s_tmax), gamma_max, 0.0)
        sigma_hat = sigma * (1.0 + gamma)
        if self.s_churn > 0:
            if key is None:
                raise ValueError(
                    "EDMStochastic with s_churn > 0 is stochastic: pass key=jax.random.key(seed) "
                    "to sample()."
                )
            z = jax.random.normal(key, x.shape, x_edm.dtype)
            # sigma * sqrt(2 gamma + gamma^2) == sqrt(sigma_hat^2 - sigma^2), without the
            # cancellation that can make the difference negative (NaN) when gamma = 0.
            extra = sigma * jnp.sqrt(gamma * (2.0 + gamma))
            x_edm = x_edm + extra * self.s_noise * z

        def direction(x_edm: Array, sigma: Array) -> Array:
            x_t, t = linear_from_edm(x_edm, sigma)
            return noise_from_velocity(x_t, field(x_t, t), t)

        d = direction(x_edm, sigma_hat)
        x_euler = x_edm + (sigma_next - sigma_hat) * d

        def corrected(x_euler: Array) -> Array:
            return x_edm + 0.5 * (sigma_next - sigma_hat) * (d + direction(x_euler, sigma_next))

        to_zero = sigma_next == 0
        x_next_edm = jax.lax.cond(to_zero, lambda p: p, corrected, x_euler)
        x_next, _ = linear_from_edm(x_next_edm, sigma_next)
        return x_next, state, jnp.where(to_zero, 1, 2).astype(jnp.int32)
