"""The SiT objective: regress a velocity, noise, score or clean-data prediction on an interpolant.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise;
``x_t = alpha(t) x0 + sigma(t) eps``, ``v = alpha'(t) x0 + sigma'(t) eps``.

Per example (Ma et al. 2024, SiT, Eq. 6 and its noise/score variants):

    t ~ p(t),  eps ~ N(0, I),  x_t = alpha x0 + sigma eps,
    loss = w(t) * mean_over_elements( residual(model(x_t, t, y))^2 )

with the residual of the prediction type (``predictions``) and the weight ``w`` of
``weightings``. Flow matching with the linear path and velocity prediction is the default
(REPA, LightningDiT, RAE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.predictions import Prediction, VelocityPrediction
from nnx_objectives.protocols import Network, TimeDistribution
from nnx_objectives.time_distributions import UniformTime
from nnx_objectives.weightings import LossWeight, NoWeight
from nnx_samplers import LinearPath, Path, interpolate

__all__ = ["InterpolantObjective", "mean_over_elements"]


def mean_over_elements(x: Array) -> Array:
    """Mean over every axis but the first, in float32: ``(B, ...) -> (B,)``."""
    x = x.astype(jnp.float32)
    return jnp.mean(jnp.reshape(x, (x.shape[0], -1)), axis=1)


def _check_output(out: Array, x0: Array) -> None:
    if out.shape != x0.shape:
        raise ValueError(
            f"the model output has shape {out.shape} but the data has shape {x0.shape}; "
            "a network with learn_sigma=True returns 2C channels: split them off before the "
            "objective, or build the network with learn_sigma=False."
        )


@dataclass(frozen=True)
class InterpolantObjective:
    """SiT's interpolant objective for any path, prediction, time distribution and weight.

    Example::

        objective = InterpolantObjective(path=LinearPath(), prediction=VelocityPrediction(),
                                         time_distribution=LogitNormalTime(0.0, 1.0))
        loss, aux = objective(model, x0, y, key)   # loss: (B,)

    Attributes:
      path: the interpolation path (``LinearPath``, ``GVPPath``, ``VPPath``).
      prediction: what the network predicts (``VelocityPrediction`` ...).
      time_distribution: the law of ``t``; wrap it in ``TimeInterval`` for SiT's
        ``train_eps`` (``sit_time_interval``) and in ``ShiftedTime`` for the resolution shift.
      weight: SiT's per-example weight ``w(t)``.
    """

    path: Path = field(default_factory=LinearPath)
    prediction: Prediction = field(default_factory=VelocityPrediction)
    time_distribution: TimeDistribution = field(default_factory=UniformTime)
    weight: LossWeight = field(default_factory=NoWeight)

    def sample(self, key: Array, x0: Array) -> tuple[Array, Array]:
        """Draw the time ``t`` ``(B,)`` and the noise ``eps`` (shape of ``x0``) from ``key``."""
        key_time, key_noise = jax.random.split(key)
        t = self.time_distribution(key_time, (x0.shape[0],))
        eps = jax.random.normal(key_noise, x0.shape, dtype=jnp.float32).astype(x0.dtype)
        return t, eps

    def loss_from_output(
        self, out: Array, x0: Array, eps: Array, t: Array
    ) -> tuple[Array, dict[str, Array]]:
        """Per-example loss of a network output ``out`` produced at ``(x_t, t)``.

        Args:
          out: ``(B, ...)`` network output, in ``self.prediction``'s parameterisation.
          x0: ``(B, ...)`` clean data.
          eps: ``(B, ...)`` the noise that made ``x_t``.
          t: ``(B,)`` time, 0 = data, 1 = noise.

        Returns:
          ``((B,) loss, aux)`` with ``aux["t"]`` and ``aux["loss_unweighted"]``.
        """
        _check_output(out, x0)
        x0, eps, out = (a.astype(jnp.float32) for a in (x0, eps, out))
        residual = self.prediction.residual(self.path, t, out, x0, eps)
        unweighted = mean_over_elements(residual**2)
        loss = self.weight(self.path, t) * unweighted
        return loss, {"t": t, "loss_unweighted": unweighted}

    def loss_at(
        self, model: Network, x0: Array, y: Array, t: Array, eps: Array
    ) -> tuple[Array, dict[str, Array]]:
        """The loss at given ``t`` ``(B,)`` and ``eps`` (deterministic; ``__call__`` draws them)."""
        x_t = interpolate(self.path, x0, eps, t)
        return self.loss_from_output(model(x_t, t, y), x0, eps, t)

    def __call__(
        self, model: Network, x0: Array, y: Array, key: Array
    ) -> tuple[Array, dict[str, Array]]:
        """``objective(model, x0, y, key) -> ((B,) loss, aux)``; ``model(x_t, t, y)``."""
        t, eps = self.sample(key, x0)
        return self.loss_at(model, x0, y, t, eps)
