"""What a network's output means: velocity, noise, score or clean data, with exact conversions.

Time convention: ``t`` in [0, 1], 0 = data, 1 = noise; ``x_t = alpha x0 + sigma eps`` and
``v = alpha' x0 + sigma' eps``. Every prediction is an invertible affine function of the pair
``(x0, eps)`` given ``x_t``, so converting goes through that pair (as in SiT, Ma et al. 2024):

* velocity: ``x0 = (sigma' x - sigma v) / det``, ``eps = (alpha v - alpha' x) / det`` with
  ``det = alpha sigma' - alpha' sigma`` (linear path: ``det = 1``, ``x0 = x - t v``,
  ``eps = x + (1 - t) v``);
* noise: ``x0 = (x - sigma eps) / alpha``;
* score: ``score = -eps / sigma``, so ``eps = -sigma score`` and
  ``x0 = (x + sigma^2 score) / alpha``;
* clean data: ``eps = (x - alpha x0) / sigma``.

Each prediction also gives the per-element residual that SiT's loss squares
(``transport.training_losses``): velocity ``out - v``, noise ``out - eps``, score
``sigma out + eps`` and, added here, clean data ``out - x0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from jax import Array

from nnx_samplers import Path, expand_time

__all__ = [
    "NoisePrediction",
    "Prediction",
    "ScorePrediction",
    "VelocityPrediction",
    "X0Prediction",
    "convert_prediction",
]


@runtime_checkable
class Prediction(Protocol):
    """A parameterisation of the network output.

    All methods take ``t`` as a scalar or ``(B,)`` (0 = data, 1 = noise) and arrays of shape
    ``(B, ...)``.
    """

    def to_x0_eps(self, path: Path, t: Array, x_t: Array, out: Array) -> tuple[Array, Array]:
        """The pair ``(x0, eps)`` that this output stands for at ``x_t``."""
        ...

    def from_x0_eps(self, path: Path, t: Array, x_t: Array, x0: Array, eps: Array) -> Array:
        """The output that stands for the pair ``(x0, eps)``."""
        ...

    def residual(self, path: Path, t: Array, out: Array, x0: Array, eps: Array) -> Array:
        """Per-element regression residual whose square the loss averages."""
        ...


def _coefficients(path: Path, t: Array, x: Array) -> tuple[Array, Array, Array, Array]:
    te = expand_time(t, x)
    return path.alpha(te), path.sigma(te), path.d_alpha(te), path.d_sigma(te)


@dataclass(frozen=True)
class VelocityPrediction:
    """The network predicts ``v = dx_t/dt = alpha' x0 + sigma' eps`` (SiT's default)."""

    def to_x0_eps(self, path: Path, t: Array, x_t: Array, out: Array) -> tuple[Array, Array]:
        alpha, sigma, d_alpha, d_sigma = _coefficients(path, t, x_t)
        det = alpha * d_sigma - d_alpha * sigma
        return (d_sigma * x_t - sigma * out) / det, (alpha * out - d_alpha * x_t) / det

    def from_x0_eps(self, path: Path, t: Array, x_t: Array, x0: Array, eps: Array) -> Array:
        _, _, d_alpha, d_sigma = _coefficients(path, t, x0)
        return d_alpha * x0 + d_sigma * eps

    def residual(self, path: Path, t: Array, out: Array, x0: Array, eps: Array) -> Array:
        return out - self.from_x0_eps(path, t, out, x0, eps)


@dataclass(frozen=True)
class NoisePrediction:
    """The network predicts the noise ``eps`` (DDPM's epsilon-prediction)."""

    def to_x0_eps(self, path: Path, t: Array, x_t: Array, out: Array) -> tuple[Array, Array]:
        alpha, sigma, _, _ = _coefficients(path, t, x_t)
        return (x_t - sigma * out) / alpha, out

    def from_x0_eps(self, path: Path, t: Array, x_t: Array, x0: Array, eps: Array) -> Array:
        return eps

    def residual(self, path: Path, t: Array, out: Array, x0: Array, eps: Array) -> Array:
        return out - eps


@dataclass(frozen=True)
class ScorePrediction:
    """The network predicts the score ``grad log p_t(x_t) = -E[eps | x_t] / sigma``.

    SiT's residual is ``sigma * out + eps``: the score error measured in noise units, which
    stays bounded as ``sigma -> 0``.
    """

    def to_x0_eps(self, path: Path, t: Array, x_t: Array, out: Array) -> tuple[Array, Array]:
        alpha, sigma, _, _ = _coefficients(path, t, x_t)
        return (x_t + sigma**2 * out) / alpha, -sigma * out

    def from_x0_eps(self, path: Path, t: Array, x_t: Array, x0: Array, eps: Array) -> Array:
        _, sigma, _, _ = _coefficients(path, t, eps)
        return -eps / sigma

    def residual(self, path: Path, t: Array, out: Array, x0: Array, eps: Array) -> Array:
        _, sigma, _, _ = _coefficients(path, t, out)
        return sigma * out + eps


@dataclass(frozen=True)
class X0Prediction:
    """The network predicts the clean data ``x0`` (a denoiser, as EDM's ``D``)."""

    def to_x0_eps(self, path: Path, t: Array, x_t: Array, out: Array) -> tuple[Array, Array]:
        alpha, sigma, _, _ = _coefficients(path, t, x_t)
        return out, (x_t - alpha * out) / sigma

    def from_x0_eps(self, path: Path, t: Array, x_t: Array, x0: Array, eps: Array) -> Array:
        return x0

    def residual(self, path: Path, t: Array, out: Array, x0: Array, eps: Array) -> Array:
        return out - x0


def convert_prediction(
    out: Array, *, source: Prediction, target: Prediction, path: Path, x_t: Array, t: Array
) -> Array:
    """Convert a network output from one parameterisation to another, exactly.

    Example: ``convert_prediction(v, source=VelocityPrediction(), target=ScorePrediction(),
    path=LinearPath(), x_t=x, t=t)`` gives ``-(x + (1 - t) v) / t``.

    Args:
      out: ``(B, ...)`` output in the ``source`` parameterisation.
      source: what ``out`` is.
      target: what to return.
      path: the interpolation path.
      x_t: ``(B, ...)`` the network input.
      t: scalar or ``(B,)`` time, 0 = data, 1 = noise. Conversions that divide by ``alpha``
        (from noise or score) are undefined at ``t = 1`` on paths with ``alpha(1) = 0``, and
        those that divide by ``sigma`` are undefined at ``t = 0``.

    Returns:
      ``(B, ...)`` the same quantity in the ``target`` parameterisation.
    """
    x0, eps = source.to_x0_eps(path, t, x_t, out)
    return target.from_x0_eps(path, t, x_t, x0, eps)
