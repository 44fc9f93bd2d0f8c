"""Protocols for the networks and fields that samplers and objectives consume, and the one
time-broadcasting rule.

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
    """A class-conditional network ``model(x_t, t, y) -> output`` (samplers and objectives).

    ``x_t``: ``(B, ...)`` noisy input (images NHWC ``(B, H, W, C)``); ``t``: ``(B,)`` float time
    (0 = data, 1 = noise); ``y``: ``(B,)`` int32 labels (the null label of classifier-free
    guidance is an argument, never a literal). The output is raw: what it means (velocity,
    noise, score, x0, EDM's ``F``) is decided by the objective's prediction type or by a
    wrapper (an adapter such as :class:`~nnx_samplers.VelocityFromNoise` when sampling).
    """

    def __call__(self, x: Array, t: Array, y: Array) -> Any: ...


@runtime_checkable
class TwoTimeNetwork(Protocol):
    """A two-time network (MeanFlow): ``model(x_t, r, t, y) -> average velocity u``.

    ``0 <= r <= t <= 1``; ``u`` moves ``x_t`` to ``x_r = x_t + (r - t) * u``.
    """

    def __call__(self, x: Array, r: Array, t: Array, y: Array) -> Any: ...


def expand_time(t: Array | float, x: Array) -> Array:
    """Reshapes a scalar or per-sample time so that it broadcasts against ``x``.

    The one time-broadcasting rule of the library (samplers and objectives): a scalar ``t``
    comes back as it is (0-d, it broadcasts against any ``x``); a ``(B,)`` one comes back as
    ``(B, 1, ..., 1)`` with ``x.ndim`` dimensions. Either way ``coefficient(expand_time(t, x))
    * x`` has the shape of ``x``, and the dtype (and JAX's weak type of a Python float) is
    kept. A scalar is not reshaped because XLA then folds it as a scalar: reshaping it to
    ``(1, ..., 1)`` changes the last bits of sampled images.

    Args:
      t: scalar or ``(B,)``; the same applies to any per-sample scalar (a guidance scale, a
        noise level, a mask).
      x: ``(B, ...)``.

    Returns:
      ``t`` unchanged if scalar, else ``t`` reshaped to ``(B, 1, ..., 1)``.

    Raises:
      ValueError: ``t`` is neither a scalar nor ``(B,)``.
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
