"""Interpolation paths ``x_t = alpha(t) * x0 + sigma(t) * eps`` that samplers need to know.

Time convention: ``t`` in [0, 1], ``t = 0`` is data (``alpha = 1, sigma = 0``), ``t = 1`` is
noise. The velocity is ``v = alpha'(t) x0 + sigma'(t) eps``. The log signal-to-noise ratio
``lambda(t) = log(alpha / sigma)`` decreases from ``+inf`` at data to its minimum at noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
from jax import Array

__all__ = ["CosinePath", "LinearPath", "Path", "log_snr"]


@runtime_checkable
class Path(Protocol):
    """Coefficients of ``x_t = alpha(t) x0 + sigma(t) eps`` and their time derivatives."""

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
class CosinePath:
    """SiT's GVP path: ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``."""

    def alpha(self, t: Array) -> Array:
        # cos(pi/2) rounds to -4e-8 in float32; clamp so that log(alpha) is -inf, not NaN.
        return jnp.maximum(jnp.cos(0.5 * math.pi * jnp.asarray(t)), 0.0)

    def sigma(self, t: Array) -> Array:
        return jnp.sin(0.5 * math.pi * jnp.asarray(t))

    def d_alpha(self, t: Array) -> Array:
        return -0.5 * math.pi * jnp.sin(0.5 * math.pi * jnp.asarray(t))

    def d_sigma(self, t: Array) -> Array:
        return 0.5 * math.pi * jnp.cos(0.5 * math.pi * jnp.asarray(t))

    def t_from_log_snr(self, log_snr: Array) -> Array:
        return (2.0 / math.pi) * jnp.arctan(jnp.exp(-jnp.asarray(log_snr)))
