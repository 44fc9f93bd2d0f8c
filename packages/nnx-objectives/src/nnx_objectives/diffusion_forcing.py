"""Diffusion Forcing: a flow-matching loss with an independent time for every frame.

Chen et al. 2024, "Diffusion Forcing: Next-token Prediction Meets Full-Sequence Diffusion",
sec. 3.1 and Algorithm 1: each token of a sequence (here each frame of a clip) is noised to
its own level, drawn independently, and the network denoises all of them at once. Trained
this way a causal network can later be sampled with any per-frame schedule: all frames
together, frame by frame, or the pyramid in between (`nnx_samplers.frame_schedules`).

With the linear path and velocity prediction, per clip ``x0: (F, H, W, C)``::

    t_f ~ p(t) independently,  eps ~ N(0, I),  x_f = (1 - t_f) x0_f + t_f eps_f,
    loss = mean_{f, elements} (model(x, t, y)_f - (eps_f - x0_f))^2

Any path and prediction of `nnx_samplers` / `nnx_objectives.predictions` apply: the frames
are flattened into the batch (``(B*F, H, W, C)`` with times ``(B*F,)``) so the per-sample
rules of the image objectives are reused unchanged.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.interpolant import mean_over_elements
from nnx_objectives.predictions import Prediction, VelocityPrediction
from nnx_objectives.protocols import TimeDistribution
from nnx_objectives.time_distributions import UniformTime
from nnx_samplers import LinearPath, Path, interpolate

__all__ = ["DiffusionForcingObjective"]


@dataclass(frozen=True)
class DiffusionForcingObjective:
    """``objective(model, x0, y, key) -> ((B,) loss, aux)`` over clips ``x0: (B, F, H, W, C)``.

    ``model(x_t, t, y)`` takes the noised clip, per-frame times ``t: (B, F)`` and labels
    ``(B,)`` and returns the prediction for every frame (e.g. `nnx_nets.VideoDiT`).

    Attributes:
      path: the interpolation path (`LinearPath` by default).
      prediction: what the network predicts (velocity by default).
      time_distribution: the law of each frame's time, drawn independently per frame.
    """

    path: Path = field(default_factory=LinearPath)
    prediction: Prediction = field(default_factory=VelocityPrediction)
    time_distribution: TimeDistribution = field(default_factory=UniformTime)

    def loss_at(self, model: Any, x0: Array, y: Array, t: Array, eps: Array) -> tuple[Array, dict]:
        """The loss at given per-frame times ``t: (B, F)`` and noise ``eps`` (shape of ``x0``)."""
        if x0.ndim < 3 or t.shape != x0.shape[:2]:
            raise ValueError(
                f"need clips x0 (B, F, ...) and per-frame times t (B, F); got x0 {x0.shape}, "
                f"t {t.shape}"
            )
        frames = x0.shape[:2]

        def flat(a: Array) -> Array:
            return a.reshape(frames[0] * frames[1], *a.shape[2:])

        x_t = interpolate(self.path, flat(x0), flat(eps), t.reshape(-1)).reshape(x0.shape)
        out = model(x_t, t, y)
        if out.shape != x0.shape:
            raise ValueError(f"the model returned {out.shape} for clips of shape {x0.shape}")
        x0_32, eps_32, out_32 = (flat(a).astype(jnp.float32) for a in (x0, eps, out))
        residual = self.prediction.residual(self.path, t.reshape(-1), out_32, x0_32, eps_32)
        per_frame = mean_over_elements(residual**2).reshape(frames)
        loss = jnp.mean(per_frame, axis=1)
        return loss, {"t": jnp.mean(t, axis=1), "loss_unweighted": loss}

    def __call__(self, model: Any, x0: Array, y: Array, key: Array) -> tuple[Array, dict]:
        key_time, key_noise = jax.random.split(key)
        t = self.time_distribution(key_time, x0.shape[:2])
        eps = jax.random.normal(key_noise, x0.shape, dtype=jnp.float32).astype(x0.dtype)
        return self.loss_at(model, x0, y, t, eps)
