"""Interpolation paths ``x_t = alpha(t) x0 + sigma(t) eps``: the one home of the path maths.

Both the samplers and ``nnx_objectives`` use these classes (the objectives re-export them).

Time convention: ``t`` in [0, 1], ``t = 0`` is data (``alpha = 1``, ``sigma = 0``), ``t = 1``
is noise; velocity ``v = dx_t/dt = alpha'(t) x0 + sigma'(t) eps``. The log signal-to-noise
ratio ``lambda(t) = log(alpha / sigma)`` decreases from ``+inf`` at data to its minimum at
noise. SiT's code runs the other way (its ``t = 1`` is data): each SiT formula below is
rewritten with ``t_SiT = 1 - t``, which flips the sign of every time derivative.

Paths (Ma et al. 2024, SiT, Sec. 2 / Table 1):

* ``LinearPath``: ``alpha = 1 - t``, ``sigma = t`` (SiT ``ICPlan``; ``v = eps - x0``).
* ``GVPPath``: ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)`` (SiT ``GVPCPlan``).
* ``VPPath``: ``log alpha = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``,
  ``sigma = sqrt(1 - alpha^2)`` with ``beta_min = 0.1``, ``beta_max = 20`` (SiT ``VPCPlan``,
  the VP-SDE of Song et al. 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import expand_time

__all__ = [
    "GVPPath",
    "LinearPath",
    "Path",
    "VPPath",
    "conditional_velocity",
    "interpolate",
    "log_snr",
    "score_coefficient",
]


@runtime_checkable
class Path(Protocol):
    """Coefficients of ``x_t = alpha(t) x0 + sigma(t) eps`` and their time derivatives.

    Every method takes ``t`` of any shape (broadcast against the data by the caller, see
    ``expand_time``) with ``t = 0`` data and ``t = 1`` noise. ``t_from_log_snr`` is needed
    only by ``LogSNRGrid`` (and DPM-Solver grids built from it).
    """

    def alpha(self, t: Array) -> Array: ...

    def sigma(self, t: Array) -> Array: ...

    def d_alpha(self, t: Array) -> Array: ...

    def d_sigma(self, t: Array) -> Array: ...

    def t_from_log_snr(self, log_snr: Array) -> Array:
        """Inverse of ``lambda(t) = log(alpha(t) / sigma(t))``."""
        ...


def log_snr(path: Path, t: Array) -> Array:
    """``lambda(t) = log(alpha(t)) - log(sigma(t))``; ``-inf`` where alpha = 0, ``+inf`` where sigma = 0."""
    t = jnp.asarray(t)
    return jnp.log(path.alpha(t)) - jnp.log(path.sigma(t))


def interpolate(path: Path, x0: Array, eps: Array, t: Array) -> Array:
    """``x_t = alpha(t) x0 + sigma(t) eps``.

    Args:
      path: the interpolation path.
      x0: ``(B, ...)`` clean data.
      eps: ``(B, ...)`` standard normal noise.
      t: scalar or ``(B,)`` time, 0 = data, 1 = noise.
    """
    te = expand_time(t, x0)
    return path.alpha(te) * x0 + path.sigma(te) * eps


def conditional_velocity(path: Path, x0: Array, eps: Array, t: Array) -> Array:
    """Conditional velocity ``v = alpha'(t) x0 + sigma'(t) eps`` (linear path: ``eps - x0``).

    Args:
      path: the interpolation path.
      x0: ``(B, ...)`` clean data.
      eps: ``(B, ...)`` noise.
      t: scalar or ``(B,)`` time, 0 = data, 1 = noise.
    """
    te = expand_time(t, x0)
    return path.d_alpha(te) * x0 + path.d_sigma(te) * eps


def score_coefficient(path: Path, t: Array) -> Array:
    """``g(t) = sigma sigma' - sigma^2 alpha' / alpha``, so that ``v = (alpha'/alpha) x - g score``.

    Derivation: with ``eps = -sigma * score`` and ``x0 = (x - sigma eps) / alpha``,
    ``v = alpha' x0 + sigma' eps = (alpha'/alpha) x + (sigma^2 alpha'/alpha - sigma sigma') score``.
    ``g`` is SiT's ``drift_var`` (``compute_drift``), which is non-negative in both time
    conventions; it equals half the squared diffusion coefficient of the matching SDE
    (VP: ``beta(t) / 2``).

    Args:
      t: time of any shape, 0 = data, 1 = noise.
    """
    alpha, sigma = path.alpha(t), path.sigma(t)
    return sigma * path.d_sigma(t) - sigma**2 * path.d_alpha(t) / alpha


@dataclass(frozen=True)
class LinearPath:
    """Rectified-flow / SiT linear path: ``alpha = 1 - t``, ``sigma = t``, ``v = eps - x0``.

    Its log-SNR is ``lambda = log((1 - t) / t) = -log(sigma_E)`` with EDM's noise level
    ``sigma_E = t / (1 - t)``.
    """

    def alpha(self, t: Array) -> Array:
        return 1.0 - jnp.asarray(t)

    def sigma(self, t: Array) -> Array:
        return jnp.asarray(t)

    def d_alpha(self, t: Array) -> Array:
        return -jnp.ones_like(jnp.asarray(t))

    def d_sigma(self, t: Array) -> Array:
        return jnp.ones_like(jnp.asarray(t))

    def t_from_log_snr(self, log_snr: Array) -> Array:
        return 1.0 / (1.0 + jnp.exp(jnp.asarray(log_snr)))


@dataclass(frozen=True)
class GVPPath:
    """Generalised variance-preserving path: ``alpha = cos(pi t/2)``, ``sigma = sin(pi t/2)``.

    ``alpha^2 + sigma^2 = 1`` for every ``t``; ``lambda = -log(tan(pi t / 2))``. TrigFlow (sCM)
    is this path in the angle ``s = pi t / 2`` on data scaled to unit standard deviation (see
    ``nnx_objectives.trigflow``). Formerly also ``nnx_samplers.CosinePath``.
    """

    def alpha(self, t: Array) -> Array:
        # cos(pi/2) rounds to -4.4e-8 in float32; clamp so that alpha is never negative (and
        # log(alpha) is -inf, not NaN).
        return jnp.maximum(jnp.cos(0.5 * math.pi * jnp.asarray(t)), 0.0)

    def sigma(self, t: Array) -> Array:
        return jnp.sin(0.5 * math.pi * jnp.asarray(t))

    def d_alpha(self, t: Array) -> Array:
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * jnp.asarray(t))

    def d_sigma(self, t: Array) -> Array:
        return 0.5 * math.pi * jnp.cos(0.5 * math.pi * jnp.asarray(t))

    def t_from_log_snr(self, log_snr: Array) -> Array:
        return (2.0 / math.pi) * jnp.arctan(jnp.exp(-jnp.asarray(log_snr)))


@dataclass(frozen=True)
class VPPath:
    """SiT's variance-preserving path (the VP-SDE's marginals), in our time convention.

    ``log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2``,
    ``sigma(t) = sqrt(1 - alpha(t)^2)``,
    ``alpha'(t) = -alpha(t) (t (beta_max - beta_min) + beta_min) / 2 = -alpha beta(t) / 2``,
    ``sigma'(t) = -alpha alpha' / sigma`` (infinite at ``t = 0``: keep away from the data end,
    see ``nnx_objectives.sit_time_interval``).

    Attributes:
      beta_min: ``beta(0)``, SiT's ``sigma_min`` (0.1).
      beta_max: ``beta(1)``, SiT's ``sigma_max`` (20).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def _log_alpha(self, t: Array) -> Array:
        t = jnp.asarray(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: Array) -> Array:
        return jnp.exp(self._log_alpha(t))

    def sigma(self, t: Array) -> Array:
        # 1 - alpha^2 = -expm1(2 log alpha), accurate near t = 0 where alpha -> 1.
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))

    def d_alpha(self, t: Array) -> Array:
        t = jnp.asarray(t)
        beta = self.beta_min + t * (self.beta_max - self.beta_min)
        return -0.5 * beta * self.alpha(t)

    def d_sigma(self, t: Array) -> Array:
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)

    def t_from_log_snr(self, log_snr: Array) -> Array:
        """Solves ``a t^2 + b t = -log alpha`` for ``t >= 0``.

        ``alpha^2 = sigmoid(2 lambda)`` (from ``alpha^2 + sigma^2 = 1``), so
        ``c = -log alpha = -log_sigmoid(2 lambda) / 2 >= 0`` with
        ``a = (beta_max - beta_min) / 4``, ``b = beta_min / 2``; the root is written as
        ``2 c / (b + sqrt(b^2 + 4 a c))``, which stays finite when ``a = 0``.
        """
        c = -0.5 * jax.nn.log_sigmoid(2.0 * jnp.asarray(log_snr))
        a = 0.25 * (self.beta_max - self.beta_min)
        b = 0.5 * self.beta_min
        return 2.0 * c / (b + jnp.sqrt(b**2 + 4.0 * a * c))
