"""Diffusion coefficients ``D(t)`` for the reverse SDE of Euler-Maruyama (SiT's choices).

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise. For any ``D(t) >= 0``
the SDE ``dx = [v - D(t) score] dt + sqrt(2 D(t)) dW`` run from ``t = 1`` down to 0 has the
same marginals as the probability-flow ODE ``dx = v dt`` (SiT, Ma et al. 2024, writes ``w = 2 D``).
``D`` is SiT's ``diffusion`` with its ``diffusion_norm`` as ``scale``; SiT's own time runs
the other way, so ``t_SiT = 1 - t`` has been substituted in every formula below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
from jax import Array

from nnx_samplers.paths import LinearPath, Path

__all__ = [
    "ConstantDiffusion",
    "DecreasingDiffusion",
    "Diffusion",
    "IncreasingDecreasingDiffusion",
    "LinearDiffusion",
    "SBDMDiffusion",
    "SigmaDiffusion",
]


@runtime_checkable
class Diffusion(Protocol):
    """``D(t) >= 0``, finite on the times a sampler evaluates (``t`` scalar or any shape)."""

    def __call__(self, t: Array) -> Array: ...


@dataclass(frozen=True)
class ConstantDiffusion:
    """``D(t) = scale``."""

    scale: float = 1.0

    def __call__(self, t: Array) -> Array:
        return jnp.full_like(jnp.asarray(t), self.scale)


@dataclass(frozen=True)
class SigmaDiffusion:
    """``D(t) = scale * sigma(t)``: SiT's headline choice (``"sigma"``); ``scale * t`` on the linear path."""

    scale: float = 1.0
    path: Path = field(default_factory=LinearPath)

    def __call__(self, t: Array) -> Array:
        return self.scale * self.path.sigma(jnp.asarray(t))


@dataclass(frozen=True)
class LinearDiffusion:
    """``D(t) = scale * t`` (SiT's ``"linear"``, ``1 - t_SiT``)."""

    scale: float = 1.0

    def __call__(self, t: Array) -> Array:
        return self.scale * jnp.asarray(t)


@dataclass(frozen=True)
class SBDMDiffusion:
    """The score-based-diffusion (linear-KL) choice ``D(t) = scale * sigma (sigma' - alpha' sigma / alpha)``.

    On the linear path ``D = scale * (t^2 / (1 - t) + t) = scale * t / (1 - t)``, which is
    infinite at ``t = 1``: it is evaluated at ``min(t, t_max)`` so that the first step from
    pure noise stays finite (the SDE is valid for any ``D >= 0``).

    Attributes:
      scale: multiplier (SiT's ``diffusion_norm``).
      t_max: cap on the time at which ``D`` is evaluated; ``D(0.96) = 24 * scale``.
      path: interpolation path.
    """

    scale: float = 1.0
    t_max: float = 0.96
    path: Path = field(default_factory=LinearPath)

    def __post_init__(self) -> None:
        if not 0.0 < self.t_max < 1.0:
            raise ValueError(f"SBDMDiffusion.t_max must lie in (0, 1); got {self.t_max}.")

    def __call__(self, t: Array) -> Array:
        t = jnp.minimum(jnp.asarray(t), self.t_max)
        p = self.path
        sigma = p.sigma(t)
        return self.scale * sigma * (p.d_sigma(t) - p.d_alpha(t) * sigma / p.alpha(t))


@dataclass(frozen=True)
class DecreasingDiffusion:
    """``D(t) = 0.25 (1 - scale * cos(pi t))^2``: 1 at noise, 0 at data for ``scale = 1``."""

    scale: float = 1.0

    def __call__(self, t: Array) -> Array:
        return 0.25 * (1.0 - self.scale * jnp.cos(math.pi * jnp.asarray(t))) ** 2


@dataclass(frozen=True)
class IncreasingDecreasingDiffusion:
    """``D(t) = scale * sin(pi t)^2``: zero at both ends, largest at ``t = 1/2``."""

    scale: float = 1.0

    def __call__(self, t: Array) -> Array:
        return self.scale * jnp.sin(math.pi * jnp.asarray(t)) ** 2
