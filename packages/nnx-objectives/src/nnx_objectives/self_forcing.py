"""Self Forcing: train a causal few-step video generator on its own rollouts, by DMD.

Huang et al. 2025, "Self Forcing: Bridging the Train-Test Gap in Autoregressive Video
Diffusion" (arXiv 2506.08009), sec. 3. Teacher forcing and Diffusion Forcing train a causal
model on context frames taken from the data; at sampling time it conditions on its own
frames, whose errors it never saw. Self Forcing generates the whole training clip during
training the way it is sampled, frame after frame with its own earlier frames as clean
context (`nnx_samplers.next_frame_denoiser`), and scores the finished clip with a
distribution-level loss: here DMD2's distribution matching (`DistributionMatchingLoss`;
Yin et al. 2024), the real score being the Diffusion Forcing teacher and the fake score a
copy trained online on the generated clips.

Gradient truncation (the paper's stochastic gradient truncation, sec. 3.2, as done here):
each frame is made by ``K = len(times)`` consistency steps, but only one call per frame
carries the gradient, the call at a step drawn uniformly per example (DMD2's backward
simulation, `nnx_samplers.backward_simulation`: the earlier calls run under stop-gradient),
and the context frames enter later frames under stop-gradient (a choice of this
implementation: how far the paper lets gradients flow through its KV cache was not checked).
The generated clip is therefore the one a ``K``-step rollout makes, with every frame's
gradient coming from its own last call.

Both scores take the clip with one time for every frame (`clip_at_one_time`), the
full-sequence diffusion of the clip that DMD compares.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_objectives.dmd import DataPredictor, DistributionMatchingLoss
from nnx_samplers import (
    FrameDenoiser,
    LinearPath,
    Path,
    backward_simulation,
    next_frame_denoiser,
)

__all__ = ["SelfForcingLoss", "clip_at_one_time", "self_forcing_rollout"]


def clip_at_one_time(predictor: DataPredictor) -> DataPredictor:
    """``mu(x (B, F, ...), t (B,), y)``: a per-frame-time predictor with every frame at ``t``."""

    def predict(x_t: Array, t: Array, y: Array) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        return predictor(x_t, jnp.broadcast_to(t[:, None], x_t.shape[:2]), y)

    return predict


def self_forcing_rollout(
    denoise: FrameDenoiser,
    noise: Array,
    *,
    times: Sequence[float],
    key: Array,
    path: Path | None = None,
) -> Array:
    """The training rollout (module docstring): ``(B, F, ...)`` frames with truncated gradients.

    Args:
      denoise: the causal generator ``denoise(x (B, n, ...), t (B, n)) -> x0_hat``.
      noise: ``(B, F, ...)`` standard normal, one slice per frame.
      times: decreasing times in (0, 1] of each frame's few-step sampler.
      key: PRNG key (each frame's gradient step and re-noising).
      path: the re-noising path (linear by default).

    Returns:
      ``(B, F, ...)``; frame ``f`` carries the gradient of its own final call only.
    """
    path = path or LinearPath()
    frames: list[Array] = []
    for index, frame_key in enumerate(jax.random.split(key, noise.shape[1])):
        context = jax.lax.stop_gradient(jnp.stack(frames, axis=1)) if frames else None
        single = next_frame_denoiser(denoise, context)
        x_in, t_in = backward_simulation(
            single, noise[:, index], times=times, key=frame_key, path=path
        )
        frames.append(single(x_in, t_in))
    return jnp.stack(frames, axis=1)


@dataclass(frozen=True)
class SelfForcingLoss:
    """``loss(generator, noise, y, key, *, real, fake) -> (loss (B,), aux, clip)``.

    The generator's rollout (`self_forcing_rollout`) scored by distribution matching against
    the real and fake per-frame-time predictors, both read at one time for the whole clip.
    The returned clip (generator gradient attached) is what the fake score trains on. With
    DMD2's two-time-scale rule the two halves are called apart (`rollout` every step for the
    fake score, `matching` on generator steps only).

    Attributes:
      times: the generator's per-frame times (``uniform_step_times(K)``).
      dmd: the distribution-matching loss (its ``t_min`` / ``t_max``).
    """

    times: tuple[float, ...] = (1.0,)
    dmd: DistributionMatchingLoss = field(default_factory=DistributionMatchingLoss)

    def rollout(self, generator: FrameDenoiser, noise: Array, key: Array) -> Array:
        """`self_forcing_rollout` of ``generator`` from ``noise: (B, F, ...)``."""
        return self_forcing_rollout(generator, noise, times=self.times, key=key, path=self.dmd.path)

    def matching(
        self, clip: Array, y: Array, key: Array, *, real: DataPredictor, fake: DataPredictor
    ) -> tuple[Array, dict[str, Array]]:
        """DMD on ``clip: (B, F, ...)``, one time per clip, per-frame-time predictors."""
        return self.dmd(clip, y, key, real=clip_at_one_time(real), fake=clip_at_one_time(fake))

    def __call__(
        self,
        generator: FrameDenoiser,
        noise: Array,
        y: Array,
        key: Array,
        *,
        real: DataPredictor,
        fake: DataPredictor,
    ) -> tuple[Array, dict[str, Array], Array]:
        key_rollout, key_dmd = jax.random.split(key)
        clip = self.rollout(generator, noise, key_rollout)
        loss, aux = self.matching(clip, y, key_dmd, real=real, fake=fake)
        return loss, aux, clip
