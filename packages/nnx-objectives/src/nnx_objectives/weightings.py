"""SiT's loss weightings ``w(t)`` for noise- and score-predicting models.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise. With the score coefficient
``g(t) = sigma sigma' - sigma^2 alpha'/alpha`` (SiT's ``drift_var``, see
``paths.score_coefficient``), SiT (``transport.training_losses``) defines

* ``NoWeight``: ``w = 1``;
* ``VelocityWeight``: ``w = (g / sigma)^2``. A noise error ``e`` is a velocity error
  ``(g / sigma) e`` (``v = (alpha'/alpha) x + (g / sigma) eps``), so a noise model under this
  weight minimises the velocity loss;
* ``LikelihoodWeight``: ``w = g / sigma^2``, the score-matching weight whose integral bounds
  the negative log-likelihood (Song et al. 2021, "Maximum likelihood training").

SiT applies these weights only to noise and score models and ignores them for velocity
models; ``InterpolantObjective`` applies whatever weight it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
from jax import Array

from nnx_samplers import Path, score_coefficient

__all__ = ["LikelihoodWeight", "LossWeight", "NoWeight", "VelocityWeight"]


@runtime_checkable
class LossWeight(Protocol):
    """A per-example loss weight ``w(t)``: ``weight(path, t) -> (B,)`` for ``t`` of shape ``(B,)``."""

    def __call__(self, path: Path, t: Array) -> Array: ...


@dataclass(frozen=True)
class NoWeight:
    """``w(t) = 1``."""

    def __call__(self, path: Path, t: Array) -> Array:
        return jnp.ones_like(jnp.asarray(t, dtype=jnp.float32))


@dataclass(frozen=True)
class VelocityWeight:
    """``w(t) = (g(t) / sigma(t))^2``: turns a noise loss into the velocity loss."""

    def __call__(self, path: Path, t: Array) -> Array:
        return (score_coefficient(path, t) / path.sigma(t)) ** 2


@dataclass(frozen=True)
class LikelihoodWeight:
    """``w(t) = g(t) / sigma(t)^2``: the maximum-likelihood weighting of score matching."""

    def __call__(self, path: Path, t: Array) -> Array:
        return score_coefficient(path, t) / path.sigma(t) ** 2
