"""Conversions between predictions, and adapters that turn any prediction into a velocity field.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise,
``x_t = alpha(t) x0 + sigma(t) eps`` and ``v = alpha'(t) x0 + sigma'(t) eps``. Solving the two
linear relations for the unknown pair gives every conversion (as in SiT, Ma et al. 2024):

* ``x0 = (sigma' x - sigma v) / (alpha sigma' - alpha' sigma)``,
* ``eps = (alpha v - alpha' x) / (alpha sigma' - alpha' sigma)``, ``score = -eps / sigma``;
* linear path: ``x0 = x - t v``, ``eps = x + (1 - t) v``, ``score = -(x + (1 - t) v) / t``.

Network adapters for converted checkpoints that use another convention (SiT and hustvl's
LightningDiT train with ``t = 1`` as data and predict ``data - noise``) are named here and
chosen by name (:func:`adapt_network`), so a converter can record which ones a checkpoint
needs.

EDM's variables (``x_E = x0 + sigma_E eps``) map to the linear path through
``sigma_E = t / (1 - t)`` and ``x_E = x_t / (1 - t)``; this is the one place in the library
where that conversion is written (``nnx_objectives`` imports and re-exports it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import expand_time
from nnx_samplers.paths import LinearPath, Path

__all__ = [
    "NETWORK_ADAPTERS",
    "FirstHalfChannels",
    "TimeFlippedVelocity",
    "adapt_network",
    "VelocityFromData",
    "VelocityFromEDMDenoiser",
    "VelocityFromNoise",
    "VelocityFromScore",
    "data_from_velocity",
    "edm_from_linear",
    "edm_sigma_from_t",
    "linear_from_edm",
    "noise_from_velocity",
    "score_from_velocity",
    "t_from_edm_sigma",
    "velocity_from_data",
    "velocity_from_noise",
    "velocity_from_score",
]

Prediction = Callable[[Array, Array], Array]
LINEAR = LinearPath()


def _coefficients(path: Path, t: Array, x: Array) -> tuple[Array, Array, Array, Array]:
    t = expand_time(t, x)
    return path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t)


def data_from_velocity(x: Array, v: Array, t: Array, path: Path = LINEAR) -> Array:
    """Clean-data prediction from a velocity: ``x0 = (sigma' x - sigma v) / (alpha sigma' - alpha' sigma)``.

    Args:
      x: ``x_t``, ``(B, ...)``.
      v: velocity ``dx_t/dt``, same shape.
      t: scalar or ``(B,)`` time (0 = data, 1 = noise).
      path: the interpolation path (linear: ``x0 = x - t v``).
    """
    alpha, sigma, d_alpha, d_sigma = _coefficients(path, t, x)
    return (d_sigma * x - sigma * v) / (alpha * d_sigma - d_alpha * sigma)


def noise_from_velocity(x: Array, v: Array, t: Array, path: Path = LINEAR) -> Array:
    """Noise prediction from a velocity: ``eps = (alpha v - alpha' x) / (alpha sigma' - alpha' sigma)``.

    Linear path: ``eps = x + (1 - t) v``; finite for every ``t`` in [0, 1].
    """
    alpha, sigma, d_alpha, d_sigma = _coefficients(path, t, x)
    return (alpha * v - d_alpha * x) / (alpha * d_sigma - d_alpha * sigma)


def score_from_velocity(x: Array, v: Array, t: Array, path: Path = LINEAR) -> Array:
    """Score ``grad log p_t(x) = -eps / sigma`` from a velocity (linear: ``-(x + (1 - t) v) / t``).

    Singular at ``t = 0`` (``sigma = 0``); samplers never evaluate it there.
    """
    sigma = path.sigma(expand_time(t, x))
    return -noise_from_velocity(x, v, t, path) / sigma


def velocity_from_data(x: Array, x0: Array, t: Array, path: Path = LINEAR) -> Array:
    """Velocity from a clean-data prediction: ``v = (sigma' x + (alpha' sigma - alpha sigma') x0) / sigma``.

    Linear path: ``v = (x - x0) / t``; singular at ``t = 0``.
    """
    alpha, sigma, d_alpha, d_sigma = _coefficients(path, t, x)
    return (d_sigma * x + (d_alpha * sigma - alpha * d_sigma) * x0) / sigma


def velocity_from_noise(x: Array, eps: Array, t: Array, path: Path = LINEAR) -> Array:
    """Velocity from a noise prediction: ``v = (alpha' x + (alpha sigma' - alpha' sigma) eps) / alpha``.

    Linear path: ``v = (eps - x) / (1 - t)``; singular at ``t = 1`` (start such grids below 1).
    """
    alpha, sigma, d_alpha, d_sigma = _coefficients(path, t, x)
    return (d_alpha * x + (alpha * d_sigma - d_alpha * sigma) * eps) / alpha


def velocity_from_score(x: Array, score: Array, t: Array, path: Path = LINEAR) -> Array:
    """Velocity from a score prediction through ``eps = -sigma * score``; singular at ``t = 1``."""
    sigma = path.sigma(expand_time(t, x))
    return velocity_from_noise(x, -sigma * score, t, path)


def edm_sigma_from_t(t: Array) -> Array:
    """EDM noise level of linear-path time: ``sigma_E = t / (1 - t)`` (``inf`` at ``t = 1``)."""
    t = jnp.asarray(t)
    return t / (1.0 - t)


def t_from_edm_sigma(sigma: Array) -> Array:
    """Linear-path time of an EDM noise level: ``t = sigma_E / (1 + sigma_E)``; ``inf`` maps to 1."""
    sigma = jnp.asarray(sigma)
    return 1.0 / (1.0 + 1.0 / sigma)


def edm_from_linear(x: Array, t: Array) -> tuple[Array, Array]:
    """Linear-path state to EDM variables: ``(x_E, sigma_E) = (x_t / (1 - t), t / (1 - t))``.

    Args:
      x: ``x_t = (1 - t) x0 + t eps``, ``(B, ...)``.
      t: scalar or ``(B,)`` time, below 1.

    Returns:
      ``x_E = x0 + sigma_E eps`` with the shape of ``x``, and ``sigma_E`` with the shape of ``t``.
    """
    return x / (1.0 - expand_time(t, x)), edm_sigma_from_t(t)


def linear_from_edm(x_edm: Array, sigma: Array) -> tuple[Array, Array]:
    """EDM variables to the linear path: ``(x_t, t) = (x_E / (1 + sigma_E), sigma_E / (1 + sigma_E))``."""
    sigma = jnp.asarray(sigma)
    return x_edm / (1.0 + expand_time(sigma, x_edm)), t_from_edm_sigma(sigma)


@dataclass(frozen=True)
class VelocityFromNoise:
    """A velocity field from a noise (epsilon) predictor ``predict(x, t) -> eps``.

    Attributes:
      predict: ``(x: (B, ...), t: scalar or (B,)) -> eps`` of the shape of ``x``; e.g. a
        guidance wrapper around an epsilon network.
      path: interpolation path the predictor was trained on.
    """

    predict: Prediction
    path: Path = field(default_factory=LinearPath)

    def __call__(self, x: Array, t: Array) -> Array:
        return velocity_from_noise(x, self.predict(x, t), t, self.path)


@dataclass(frozen=True)
class VelocityFromData:
    """A velocity field from a clean-data (x0) predictor ``predict(x, t) -> x0``.

    Singular at ``t = 0`` for every path: pair it with a solver whose step to 0 does not
    evaluate the field there (Euler, ``Heun(final_step="euler")``, DPM-Solver++).
    """

    predict: Prediction
    path: Path = field(default_factory=LinearPath)

    def __call__(self, x: Array, t: Array) -> Array:
        return velocity_from_data(x, self.predict(x, t), t, self.path)


@dataclass(frozen=True)
class VelocityFromScore:
    """A velocity field from a score predictor ``predict(x, t) -> grad log p_t(x)``."""

    predict: Prediction
    path: Path = field(default_factory=LinearPath)

    def __call__(self, x: Array, t: Array) -> Array:
        return velocity_from_score(x, self.predict(x, t), t, self.path)


@dataclass(frozen=True)
class VelocityFromEDMDenoiser:
    """A linear-path velocity field from an EDM denoiser ``D(x_E, sigma_E) -> x0`` (Karras et al. 2022).

    The denoiser sees ``x_E = x_t / (1 - t)`` and ``sigma_E = t / (1 - t)`` (scalar or ``(B,)``)
    and its output is turned into ``v = (x_t - D) / t``. Use a grid that starts below
    ``t = 1`` (``EDMGrid`` starts at ``sigma_max / (1 + sigma_max)``) and does not evaluate at
    ``t = 0``.

    Attributes:
      denoiser: ``(x_E: (B, ...), sigma_E: scalar or (B,)) -> x0``, e.g. EDM preconditioning
        ``D = c_skip x + c_out F(c_in x, c_noise)`` around a network.
    """

    denoiser: Callable[[Array, Array], Array]

    def __call__(self, x: Array, t: Array) -> Array:
        x_edm, sigma = edm_from_linear(x, t)
        return velocity_from_data(x, self.denoiser(x_edm, sigma), t, LINEAR)


@dataclass(frozen=True)
class TimeFlippedVelocity:
    """A network trained with ``t = 1`` as data, seen in the library's convention.

    SiT (``transport/path.py``: ``x_t = t x1 + (1 - t) x0`` with ``x1`` the data) and
    hustvl/LightningDiT predict ``u = data - noise`` at their time ``s = 1 - t``. Our velocity
    is ``dx_t/dt = noise - data``, so the adapted network is ``-network(x, 1 - t, y)``.

    Attributes:
      network: ``network(x: (B, H, W, C), s: (B,), y: (B,)) -> (B, H, W, C)`` in the other
        convention.
    """

    network: Callable[[Array, Array, Array], Array]

    def __call__(self, x: Array, t: Array, y: Array) -> Array:
        return -self.network(x, 1.0 - jnp.asarray(t), y)


@dataclass(frozen=True)
class FirstHalfChannels:
    """Keeps the first half of the output channels: ``(B, ..., 2C) -> (B, ..., C)``.

    SiT's and LightningDiT's ``forward`` drop the learned-sigma half of a ``learn_sigma``
    network (``x, _ = x.chunk(2, dim=1)``); a converted network returns both halves.
    """

    network: Callable[[Array, Array, Array], Array]

    def __call__(self, x: Array, t: Array, y: Array) -> Array:
        out = self.network(x, t, y)
        return out[..., : out.shape[-1] // 2]


NETWORK_ADAPTERS: dict[str, Callable[[Callable], Callable]] = {
    "first_half_channels": FirstHalfChannels,
    "time_flipped_velocity": TimeFlippedVelocity,
}
"""Adapters by name, the names that ``nnx_weightconv.checkpoint_convention`` records."""


def adapt_network(names: Sequence[str], network: Callable) -> Callable:
    """Wraps ``network`` in the named adapters, first name innermost.

    Args:
      names: names from :data:`NETWORK_ADAPTERS`, e.g. ``("first_half_channels",
        "time_flipped_velocity")`` for a converted SiT; ``()`` returns ``network``.
      network: ``network(x, t, y)``.

    Raises:
      ValueError: an unknown name (the message lists the valid ones).
    """
    for name in names:
        if name not in NETWORK_ADAPTERS:
            raise ValueError(
                f"unknown network adapter {name!r}; valid: {', '.join(NETWORK_ADAPTERS)}."
            )
        network = NETWORK_ADAPTERS[name](network)
    return network
