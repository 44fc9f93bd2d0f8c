"""The other preconditioners of EDM (Karras et al. 2022, Table 1): VP, VE and iDDPM.

Each wraps a raw network ``F(x, c_noise, y)`` into the denoiser

    D(x_E; sigma) = c_skip(sigma) x_E + c_out(sigma) F(c_in(sigma) x_E; c_noise(sigma))

with EDM's variables ``x_E = x0 + sigma eps`` (NVlabs/edm ``training/networks.py``,
``VPPrecond``, ``VEPrecond``, ``iDDPMPrecond``; ``EDMPrecond`` is :class:`nnx_objectives.EDMPrecond`):

    VP:    c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) sigma^-1(sigma)
           with sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)  (Song et al. 2021's VP SDE)
    VE:    c_skip = 1, c_out = sigma, c_in = 1, c_noise = ln(sigma / 2)
    iDDPM: c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = M - 1 - j(sigma)
           with j the index of the nearest of the M + 1 levels u_j of the cosine schedule
           (Nichol & Dhariwal 2021), and F returning twice the image channels (the second
           half, iDDPM's variance, is dropped).

As :class:`nnx_objectives.EDMPrecond`, ``denoise(x_E, sigma_E, y)`` works in EDM's variables
and ``__call__(x_t, t, y)`` is the same clean-data estimate in the library's time (linear path
``x_t = (1 - t) x0 + t eps``, ``sigma_E = t / (1 - t)``, converted by
``nnx_samplers.edm_from_linear``), so the wrapper is an ``X0Prediction`` network.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx
from jax import Array

from nnx_objectives.edm import EDMCoefficients
from nnx_objectives.protocols import Network
from nnx_samplers import edm_from_linear, expand_time

__all__ = ["IDDPMPrecond", "VEPrecond", "VPPrecond", "iddpm_sigma_levels"]


class _Preconditioned(nnx.Module):
    """``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)``; subclasses give the coefficients."""

    net: Network

    def coefficients(self, sigma: Array) -> EDMCoefficients:
        raise NotImplementedError

    def _output(self, f_out: Array, x_edm: Array) -> Array:
        return f_out

    def denoise(self, x_edm: Array, sigma: Array, y: Array) -> Array:
        """``D(x_E; sigma_E)`` for ``x_E`` ``(B, ...)`` and ``sigma_E`` scalar or ``(B,)``."""
        sigma = jnp.broadcast_to(jnp.asarray(sigma, dtype=jnp.float32), (x_edm.shape[0],))
        coefficients = self.coefficients(sigma)
        c_skip, c_out, c_in = (expand_time(c, x_edm) for c in coefficients[:3])
        f_out = self.net((c_in * x_edm).astype(x_edm.dtype), coefficients.c_noise, y)
        f_out = self._output(f_out, x_edm)
        return c_skip * x_edm.astype(jnp.float32) + c_out * f_out.astype(jnp.float32)

    def __call__(self, x_t: Array, t: Array, y: Array) -> Array:
        """The denoiser in our convention: ``x0_hat(x_t, t) = D(x_t / (1 - t); t / (1 - t))``."""
        x_edm, sigma = edm_from_linear(x_t, t)
        return self.denoise(x_edm, sigma, y)


class VPPrecond(_Preconditioned):
    """Variance-preserving preconditioning (EDM Table 1, "VP").

    Args:
      net: the raw network ``net(x, c_noise, y) -> F``.
      beta_d: extent of the noise schedule (19.9).
      beta_min: initial slope of the schedule (0.1).
      M: number of DDPM timesteps the noise label is scaled to (1000).
      epsilon_t: smallest training time (1e-5); ``sigma_min = sigma(epsilon_t)``.
    """

    def __init__(
        self,
        net: Network,
        *,
        beta_d: float = 19.9,
        beta_min: float = 0.1,
        M: int = 1000,
        epsilon_t: float = 1e-5,
    ):
        if beta_d <= 0 or beta_min <= 0 or M < 2:
            raise ValueError(
                f"VPPrecond needs beta_d, beta_min > 0 and M >= 2, got {beta_d}, {beta_min}, {M}"
            )
        self.net = net
        self.beta_d, self.beta_min, self.M, self.epsilon_t = (
            float(beta_d),
            float(beta_min),
            int(M),
            epsilon_t,
        )
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1.0))

    def sigma(self, t):
        """``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`` (VP SDE time ``t`` in [0, 1])."""
        t = jnp.asarray(t, jnp.float32)
        return jnp.sqrt(jnp.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_inv(self, sigma):
        """The VP SDE time of ``sigma``: the positive root of ``beta_d t^2 / 2 + beta_min t = ln(1 + sigma^2)``."""
        sigma = jnp.asarray(sigma, jnp.float32)
        root = jnp.sqrt(self.beta_min**2 + 2 * self.beta_d * jnp.log1p(sigma**2))
        return (root - self.beta_min) / self.beta_d

    def coefficients(self, sigma: Array) -> EDMCoefficients:
        one = jnp.ones_like(sigma)
        return EDMCoefficients(
            c_skip=one,
            c_out=-sigma,
            c_in=1.0 / jnp.sqrt(sigma**2 + 1),
            c_noise=(self.M - 1) * self.sigma_inv(sigma),
        )


class VEPrecond(_Preconditioned):
    """Variance-exploding preconditioning (EDM Table 1, "VE"): ``c_noise = ln(sigma / 2)``.

    Args:
      net: the raw network ``net(x, c_noise, y) -> F``.
      sigma_min: smallest supported noise level (0.02).
      sigma_max: largest supported noise level (100).
    """

    def __init__(self, net: Network, *, sigma_min: float = 0.02, sigma_max: float = 100.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"VEPrecond needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}"
            )
        self.net = net
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def coefficients(self, sigma: Array) -> EDMCoefficients:
        one = jnp.ones_like(sigma)
        return EDMCoefficients(c_skip=one, c_out=sigma, c_in=one, c_noise=jnp.log(0.5 * sigma))


def iddpm_sigma_levels(M: int = 1000, C_1: float = 0.001, C_2: float = 0.008) -> tuple[float, ...]:
    """The ``M + 1`` noise levels ``u_0 > ... > u_M = 0`` of iDDPM's cosine schedule (EDM Eq. 8 context).

    ``u_{j-1} = sqrt((u_j^2 + 1) / max(abar(j-1) / abar(j), C_1) - 1)`` with
    ``abar(j) = sin^2(pi j / (2 M (C_2 + 1)))``, computed in float64 from ``u_M = 0``;
    returned as a tuple of ``M + 1`` floats.
    """

    def alpha_bar(j):
        return math.sin(0.5 * math.pi * j / M / (C_2 + 1)) ** 2

    u = [0.0] * (M + 1)
    for j in range(M, 0, -1):
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), C_1) - 1)
    return tuple(u)


class IDDPMPrecond(_Preconditioned):
    """Improved-DDPM preconditioning (EDM Table 1, "iDDPM"), for ADM-style networks.

    The network must return ``2 C`` channels for ``C``-channel images; only the first ``C``
    are used.

    Args:
      net: the raw network ``net(x, c_noise, y) -> F`` (``(B, ..., 2C)``).
      C_1: timestep adjustment at low noise levels (0.001).
      C_2: timestep adjustment at high noise levels (0.008).
      M: number of DDPM timesteps (1000).
    """

    def __init__(self, net: Network, *, C_1: float = 0.001, C_2: float = 0.008, M: int = 1000):
        self.net = net
        self.C_1, self.C_2, self.M = float(C_1), float(C_2), int(M)
        levels = iddpm_sigma_levels(self.M, self.C_1, self.C_2)
        self.levels = levels  # static: hashable, no parameter
        self.sigma_min, self.sigma_max = float(levels[self.M - 1]), float(levels[0])

    def round_sigma(self, sigma: Array) -> Array:
        """Index ``(B,)`` int32 of the nearest level ``u_j`` (upstream ``round_sigma``)."""
        levels = jnp.asarray(self.levels, jnp.float32)
        return jnp.argmin(jnp.abs(sigma[:, None] - levels[None]), axis=1)

    def coefficients(self, sigma: Array) -> EDMCoefficients:
        one = jnp.ones_like(sigma)
        return EDMCoefficients(
            c_skip=one,
            c_out=-sigma,
            c_in=1.0 / jnp.sqrt(sigma**2 + 1),
            c_noise=(self.M - 1 - self.round_sigma(sigma)).astype(jnp.float32),
        )

    def _output(self, f_out: Array, x_edm: Array) -> Array:
        channels = x_edm.shape[-1]
        if f_out.shape[-1] != 2 * channels:
            raise ValueError(
                f"IDDPMPrecond needs a network with 2 x {channels} output channels (mean and "
                f"variance), got {f_out.shape[-1]}; build it with out_channels={2 * channels}"
            )
        return f_out[..., :channels]
