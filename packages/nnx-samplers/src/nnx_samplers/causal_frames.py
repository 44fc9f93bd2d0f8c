"""Few-step autoregressive video: each frame by a few denoiser calls, earlier frames as context.

A causal few-step video generator (Self Forcing, Huang et al. 2025, "Self Forcing: Bridging
the Train-Test Gap in Autoregressive Video Diffusion", sec. 3) makes frame ``f`` from its own
noise with the multistep consistency sampler of `nnx_samplers.consistency` (predict the clean
frame, re-noise it to the next time, ``len(times)`` calls), while the frames it made before
are held clean (``t = 0``) as context::

    x0_f = consistency_sample(x -> D([x_{f-w+1}, ..., x_{f-1}, x], [0, ..., 0, t])_last,
                              noise_f, times)

With a causal network the context's outputs never depend on the new frame, so this is the
generation the model is trained on (`nnx_objectives.self_forcing_rollout`) and, with a
window ``w`` shorter than the clip, a rollout beyond the training horizon.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.consistency import Denoiser, consistency_sample
from nnx_samplers.paths import LinearPath, Path

__all__ = ["FrameDenoiser", "few_step_rollout", "next_frame_denoiser"]

FrameDenoiser = Callable[[Array, Array], Array]
"""``denoise(x (B, n, ...), t (B, n)) -> x0_hat (B, n, ...)``: clean frames of a clip."""


def next_frame_denoiser(denoise: FrameDenoiser, context: Array | None) -> Denoiser:
    """The denoiser of one new frame after ``context``: ``(x (B, ...), t (B,)) -> (B, ...)``.

    Args:
      denoise: the clip denoiser (per-frame times).
      context: ``(B, c, ...)`` clean earlier frames (time 0), or ``None`` for the first frame.
    """

    def single(x_t: Array, t: Array) -> Array:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_t.shape[:1])
        if context is None:
            return denoise(x_t[:, None], t[:, None])[:, 0]
        clip = jnp.concatenate([context.astype(x_t.dtype), x_t[:, None]], axis=1)
        times = jnp.concatenate([jnp.zeros(context.shape[:2], jnp.float32), t[:, None]], axis=1)
        return denoise(clip, times)[:, -1]

    return single


def few_step_rollout(
    denoise: FrameDenoiser,
    noise: Array,
    *,
    window: int,
    times: Sequence[float],
    key: Array,
    path: Path | None = None,
) -> Array:
    """``noise.shape[1]`` frames, one after the other, ``len(times)`` calls each.

    Args:
      denoise: the causal clip denoiser (clips of at most ``window`` frames).
      noise: ``(B, L, ...)`` standard normal, one slice per output frame.
      window: the model's clip length: each frame sees the ``window - 1`` frames before it.
      times: decreasing times in (0, 1] of every frame's sampler (``uniform_step_times(K)``).
      key: PRNG key of the re-noising draws.
      path: the path that re-noises (linear by default).

    Returns:
      ``(B, L, ...)`` generated frames.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    path = path or LinearPath()
    frames: list[Array] = []
    for index, frame_key in enumerate(jax.random.split(key, noise.shape[1])):
        earlier = frames[max(0, index - window + 1) :]
        context = jnp.stack(earlier, axis=1) if earlier else None
        single = next_frame_denoiser(denoise, context)
        frames.append(
            consistency_sample(single, noise[:, index], times=times, key=frame_key, path=path)
        )
    return jnp.stack(frames, axis=1)
