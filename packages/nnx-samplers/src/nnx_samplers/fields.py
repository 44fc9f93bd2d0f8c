"""Protocols for what a sampler consumes, and the time-broadcasting rule they share.

Time convention (library-wide, see CONVENTIONS.md): ``t`` in [0, 1], ``t = 0`` is data,
``t = 1`` is noise, ``x_t = alpha(t) * x0 + sigma(t) * eps``; a vector field returns the
velocity ``dx_t/dt``, so sampling integrates from ``t = 1`` down to ``t = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jax.numpy as jnp
from jax import Array

__all__ = [
    "ConditionalField",
    "ConditionalTwoTimeField",
    "Network",
    "TwoTimeField",
    "TwoTimeNetwork",
    "VectorField",
    "batch_time",
    "expand_time",
]


@runtime_checkable
class VectorField(Protocol):
    """A velocity field ``f(x, t) -> dx/dt``.

    Args (of ``__call__``):
      x: state ``(B, ...)`` (images are NHWC ``(B, H, W, C)``).
      t: time, a scalar or ``(B,)``; ``t = 0`` is data, ``t = 1`` is noise.

    Returns:
      ``dx/dt`` with the shape of ``x``.
    """

    def __call__(self, x: Array, t: Array) -> Array: ...


@runtime_checkable
class TwoTimeField(Protocol):
    """An average-velocity field ``u(x, r, t)`` (MeanFlow), ``0 <= r <= t <= 1``.

    ``x_r = x_t + (r - t) * u(x_t, r, t)``; with ``r = t`` it is the instantaneous velocity.
    """

    def __call__(self, x: Array, r: Array, t: Array) -> Array: ...


@runtime_checkable
class Network(Protocol):
    """A class-conditional network ``model(x_t, t, y) -> output``.

    ``x_t: (B, H, W, C)``, ``t: (B,)`` float, ``y: (B,)`` int32; the output is raw (velocity,
    noise, x0, ... according to how the model was trained).
    """

    def __call__(self, x: Array, t: Array, y: Array) -> Any: ...


@runtime_checkable
class TwoTimeNetwork(Protocol):
    """A two-time network ``model(x_t, r, t, y) -> u`` (MeanFlow)."""

    def __call__(self, x: Array, r: Array, t: Array, y: Array) -> Any: ...


def expand_time(t: Array | float, x: Array) -> Array:
    """Reshapes a scalar or per-sample time so that it broadcasts against ``x``.

    Args:
      t: scalar or ``(B,)``.
      x: ``(B, ...)``.

    Returns:
      ``t`` unchanged if scalar, else ``t`` reshaped to ``(B, 1, ..., 1)`` with ``x.ndim`` dims.
    """
    t = jnp.asarray(t)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"time must be a scalar or have shape (batch,) = ({x.shape[0]},); got shape "
            f"{t.shape}. Pass one time per sample or a single scalar."
        )
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


def batch_time(t: Array | float, x: Array) -> Array:
    """Broadcasts a scalar or ``(B,)`` time to ``(B,)``, the shape networks expect."""
    t = jnp.asarray(t)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x.shape[0]):
        raise ValueError(
            f"time must be a scalar or have shape ({x.shape[0]},); got shape {t.shape}."
        )
    return jnp.broadcast_to(t, (x.shape[0],))


@dataclass(frozen=True)
class ConditionalField:
    """The unguided conditional field ``f(x, t) = model(x, t, y)``.

    Attributes:
      model: network ``model(x_t, t, y)``; its output must already be a velocity (wrap it in
        an adapter such as :class:`~nnx_samplers.VelocityFromNoise` otherwise).
      labels: ``(B,)`` int class labels.
    """

    model: Network
    labels: Array

    def __call__(self, x: Array, t: Array) -> Array:
        return self.model(x, batch_time(t, x), self.labels)


@dataclass(frozen=True)
class ConditionalTwoTimeField:
    """The conditional two-time field ``u(x, r, t) = model(x, r, t, y)`` (MeanFlow).

    Attributes:
      model: two-time network ``model(x_t, r, t, y)``.
      labels: ``(B,)`` int class labels.
    """

    model: TwoTimeNetwork
    labels: Array

    def __call__(self, x: Array, r: Array, t: Array) -> Array:
        return self.model(x, batch_time(r, x), batch_time(t, x), self.labels)
