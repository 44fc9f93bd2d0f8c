"""Distributions of the training time ``t`` and the wrappers that reshape them.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise.

* ``UniformTime``: SiT, REPA (``t ~ U(0, 1)``).
* ``LogitNormalTime(mean, std)``: ``t = sigmoid(N(mean, std^2))`` (SD3; LightningDiT, RAE and
  DiffuseNNX use (0, 1), MeanFlow (-0.4, 1.0)). REPA's ``"lognormal"`` option,
  ``t = s / (1 + s)`` with ``log s ~ N(0, 1)``, is the same law, and so is EDM's
  ``ln sigma_E ~ N(P_mean, P_std^2)`` once mapped by ``t = sigma_E / (1 + sigma_E)``.
* ``ShiftedTime(base, shift)``: the resolution-dependent shift
  ``t' = s t / (1 + (s - 1) t)`` (SD3 Eq. 23 in our convention; RAE), ``s > 1`` moves mass
  towards noise. ``resolution_shift(num_elements)`` gives ``s = sqrt(num_elements / 4096)``.
  Training and sampling must read ``s`` from one config value; ``shift_time`` is the
  samplers' own (``nnx_samplers.shift_time``, re-exported), so both apply the same map.
* ``TimeInterval(base, t_min, t_max)``: ``t' = t_min + (t_max - t_min) t``, SiT's way of
  keeping away from the endpoints (``train_eps``; see ``sit_time_interval``).

Each distribution has ``__call__(key, shape)`` and ``quantile(u)`` (the inverse CDF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import ndtri

from nnx_objectives.protocols import TimeDistribution
from nnx_samplers import shift_time

__all__ = [
    "LogitNormalTime",
    "ShiftedTime",
    "TimeInterval",
    "UniformTime",
    "resolution_shift",
    "shift_time",
]


def resolution_shift(num_elements: int, *, base_elements: int = 4096) -> float:
    """The shift ``s = sqrt(num_elements / base_elements)`` for an input of that many numbers.

    ``num_elements`` counts every number of one example (H * W * C of the latent or image):
    RAE at 256 px (768 x 16 x 16 tokens) gives ``sqrt(196608 / 4096) = 6.93``.
    """
    if num_elements <= 0 or base_elements <= 0:
        raise ValueError(
            f"num_elements and base_elements must be positive, got {num_elements} and "
            f"{base_elements}; pass H * W * C of one example."
        )
    return math.sqrt(num_elements / base_elements)


@dataclass(frozen=True)
class UniformTime:
    """``t ~ U(0, 1)``."""

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.uniform(key, shape, dtype=jnp.float32)

    def quantile(self, u: Array) -> Array:
        return jnp.asarray(u, dtype=jnp.float32)


@dataclass(frozen=True)
class LogitNormalTime:
    """``t = sigmoid(n)`` with ``n ~ N(mean, std^2)`` (Esser et al. 2024, SD3, Eq. 19).

    Attributes:
      mean: location of ``logit(t)``; negative values favour the data end.
      std: scale of ``logit(t)``.
    """

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.std <= 0:
            raise ValueError(f"LogitNormalTime.std must be positive, got {self.std}.")

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array:
        normal = jax.random.normal(key, shape, dtype=jnp.float32)
        return jax.nn.sigmoid(self.mean + self.std * normal)

    def quantile(self, u: Array) -> Array:
        return jax.nn.sigmoid(self.mean + self.std * ndtri(jnp.asarray(u, dtype=jnp.float32)))


@dataclass(frozen=True)
class ShiftedTime:
    """Apply the resolution shift ``t' = s t / (1 + (s - 1) t)`` to another distribution.

    Attributes:
      base: the distribution before the shift.
      shift: ``s > 0`` (``resolution_shift`` gives the usual value).
    """

    base: TimeDistribution
    shift: float

    def __post_init__(self) -> None:
        if self.shift <= 0:
            raise ValueError(f"ShiftedTime.shift must be positive, got {self.shift}.")

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array:
        return shift_time(self.base(key, shape), self.shift)

    def quantile(self, u: Array) -> Array:
        return shift_time(self.base.quantile(u), self.shift)


@dataclass(frozen=True)
class TimeInterval:
    """Map another distribution affinely onto ``[t_min, t_max]``: ``t' = t_min + (t_max - t_min) t``.

    SiT draws ``t = U(0, 1) (t1 - t0) + t0``; this is that rule for any base distribution.

    Attributes:
      base: the distribution on [0, 1].
      t_min: the lowest time (towards data).
      t_max: the highest time (towards noise).
    """

    base: TimeDistribution
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(
                f"TimeInterval needs 0 <= t_min < t_max <= 1, got [{self.t_min}, {self.t_max}]."
            )

    def __call__(self, key: Array, shape: tuple[int, ...]) -> Array:
        return self.t_min + (self.t_max - self.t_min) * self.base(key, shape)

    def quantile(self, u: Array) -> Array:
        return self.t_min + (self.t_max - self.t_min) * self.base.quantile(u)
