"""EDM (Karras et al. 2022): noise levels, preconditioning, loss weight, and the map to our time.

EDM corrupts data as ``x_E = x0 + sigma_E eps``. Our time convention (``t`` in [0, 1], 0 =
data, 1 = noise) meets it through the linear path ``x_t = (1 - t) x0 + t eps``:

    sigma_E = t / (1 - t),   x_E = x_t / (1 - t),   t = sigma_E / (1 + sigma_E).

That conversion is written once, in ``nnx_samplers.adapters`` (``edm_sigma_from_t``,
``t_from_edm_sigma``, ``edm_from_linear``, ``linear_from_edm``), which training and sampling
share; ``nnx_objectives`` re-exports it. Under it, EDM's
``ln sigma_E ~ N(P_mean, P_std^2)`` is ``LogitNormalTime(P_mean, P_std)`` in ``t``.

Preconditioning (EDM Table 1, "Ours"), ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)``:

    c_skip = sigma_d^2 / (sigma^2 + sigma_d^2)      c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2)
    c_in   = 1 / sqrt(sigma^2 + sigma_d^2)           c_noise = ln(sigma) / 4

Loss (EDM Eq. 2 and Table 1): ``lambda(sigma) ||D(x0 + sigma eps; sigma) - x0||^2`` with
``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2 = 1 / c_out^2``, so that the
network ``F`` sees a unit-variance regression target at every noise level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from nnx_objectives.interpolant import mean_over_elements
from nnx_objectives.protocols import Network
from nnx_samplers import edm_from_linear, expand_time, linear_from_edm

__all__ = [
    "EDMCoefficients",
    "EDMObjective",
    "EDMPrecond",
    "edm_loss_weight",
    "edm_preconditioning",
]


class EDMCoefficients(NamedTuple):
    """EDM's preconditioning coefficients at one noise level (each shaped like ``sigma``)."""

    c_skip: Array
    c_out: Array
    c_in: Array
    c_noise: Array


def edm_preconditioning(sigma: Array, sigma_data: float = 0.5) -> EDMCoefficients:
    """EDM Table 1 preconditioning at noise level ``sigma`` (any shape).

    Args:
      sigma: EDM noise level ``sigma_E > 0``.
      sigma_data: standard deviation of the data (0.5 in EDM and EDM2).
    """
    sigma = jnp.asarray(sigma, dtype=jnp.float32)
    total = sigma**2 + sigma_data**2
    return EDMCoefficients(
        c_skip=sigma_data**2 / total,
        c_out=sigma * sigma_data / jnp.sqrt(total),
        c_in=1.0 / jnp.sqrt(total),
        c_noise=jnp.log(sigma) / 4.0,
    )


def edm_loss_weight(sigma: Array, sigma_data: float = 0.5) -> Array:
    """``lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2`` (EDM Table 1; ``1 / c_out^2``)."""
    sigma = jnp.asarray(sigma, dtype=jnp.float32)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class EDMPrecond(nnx.Module):
    """EDM's preconditioned denoiser around any network ``F(x, c_noise, y)``.

    ``denoise(x_E, sigma_E, y) = c_skip x_E + c_out F(c_in x_E, c_noise, y)`` works in EDM's
    variables; ``__call__(x_t, t, y)`` is the same denoiser in our time convention (linear path,
    0 = data, 1 = noise), so the wrapper is a clean-data (``X0Prediction``) network that
    ``EDMObjective`` and the samplers' x0 adapters consume. The wrapped network receives
    ``c_noise = ln(sigma_E) / 4`` in place of a time.

    Args:
      net: the raw network, ``net(x, c_noise, y) -> F`` with ``x`` ``(B, ...)``,
        ``c_noise`` ``(B,)``.
      sigma_data: standard deviation of the data (0.5).
    """

    def __init__(self, net: Network, *, sigma_data: float = 0.5):
        if sigma_data <= 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}.")
        self.net = net
        self.sigma_data = float(sigma_data)

    def denoise(self, x_edm: Array, sigma: Array, y: Array) -> Array:
        """``D(x_E; sigma_E)`` for ``x_E`` ``(B, ...)`` and ``sigma_E`` scalar or ``(B,)``."""
        sigma = jnp.broadcast_to(jnp.asarray(sigma, dtype=jnp.float32), (x_edm.shape[0],))
        coefficients = edm_preconditioning(sigma, self.sigma_data)
        c_skip, c_out, c_in = (expand_time(c, x_edm) for c in coefficients[:3])
        f_out = self.net((c_in * x_edm).astype(x_edm.dtype), coefficients.c_noise, y)
        return c_skip * x_edm.astype(jnp.float32) + c_out * f_out.astype(jnp.float32)

    def __call__(self, x_t: Array, t: Array, y: Array) -> Array:
        """The denoiser in our convention: ``x0_hat(x_t, t) = D(x_t / (1 - t); t / (1 - t))``."""
        x_edm, sigma = edm_from_linear(x_t, t)
        return self.denoise(x_edm, sigma, y)


@dataclass(frozen=True)
class EDMObjective:
    """EDM's training loss: ``lambda(sigma) * mean((D(x0 + sigma eps) - x0)^2)``.

    ``ln sigma ~ N(P_mean, P_std^2)``; the model is called in our convention,
    ``model(x_t, t, y)`` with ``t = sigma / (1 + sigma)`` and ``x_t = (x0 + sigma eps)(1 - t)``,
    and must return a clean-data estimate (wrap the raw network in ``EDMPrecond``). EDM sums
    the loss over elements; this mean differs by the constant number of elements.

    Attributes:
      P_mean: mean of ``ln sigma`` (EDM: -1.2; EDM2: -0.4 at 512 px, -0.8 at 64 px).
      P_std: standard deviation of ``ln sigma`` (EDM: 1.2; EDM2: 1.0 / 1.6).
      sigma_data: standard deviation of the data (0.5).
    """

    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        if self.P_std <= 0 or self.sigma_data <= 0:
            raise ValueError(
                f"P_std and sigma_data must be positive, got {self.P_std}, {self.sigma_data}."
            )

    def sample(self, key: Array, x0: Array) -> tuple[Array, Array]:
        """Draw ``sigma`` ``(B,)`` (log-normal) and ``eps`` (shape of ``x0``)."""
        key_sigma, key_noise = jax.random.split(key)
        normal = jax.random.normal(key_sigma, (x0.shape[0],), dtype=jnp.float32)
        sigma = jnp.exp(self.P_mean + self.P_std * normal)
        eps = jax.random.normal(key_noise, x0.shape, dtype=jnp.float32).astype(x0.dtype)
        return sigma, eps

    def loss_at(
        self, model: Network, x0: Array, y: Array, sigma: Array, eps: Array
    ) -> tuple[Array, dict[str, Array]]:
        """The loss at given ``sigma`` ``(B,)`` and ``eps`` (deterministic)."""
        x_t, t = linear_from_edm(x0 + expand_time(sigma, x0) * eps, sigma)
        denoised = model(x_t, t, y)
        if denoised.shape != x0.shape:
            raise ValueError(
                f"the denoiser returned shape {denoised.shape} for data of shape {x0.shape}."
            )
        squared_error = mean_over_elements((denoised.astype(jnp.float32) - x0) ** 2)
        weight = edm_loss_weight(sigma, self.sigma_data)
        aux = {"t": t, "sigma": sigma, "loss_unweighted": squared_error}
        return weight * squared_error, aux

    def __call__(
        self, model: Any, x0: Array, y: Array, key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """``objective(model, x0, y, key) -> ((B,) loss, aux)``; ``model(x_t, t, y) -> x0_hat``."""
        sigma, eps = self.sample(key, x0)
        return self.loss_at(model, x0, y, sigma, eps)
