"""Per-frame time schedules for video: full-sequence, pyramid and autoregressive sampling.

A clip ``x: (B, F, H, W, C)`` sampled from a Diffusion Forcing model (Chen et al. 2024,
sec. 3.2 and Algorithm 2) follows a schedule matrix ``T: (R + 1, F)``: row ``k`` gives each
frame's time after ``k`` rows, from all ones (noise) to all zeros (data), and one Euler step
moves every frame from ``T[k]`` to ``T[k + 1]`` with one network call::

    x <- x + (T[k + 1] - T[k])_f * v(x, T[k])_f

`pyramid_times` with ``stride`` 0 denoises all frames together (full-sequence diffusion),
with ``stride = num_steps`` frame after frame (autoregressive, every earlier frame clean),
and in between a pyramid where frame ``f`` starts ``stride * f`` rows after frame 0 (the
paper's "pyramid" schedule). `rollout_frames` extends a clip beyond the model's window: each
new frame is denoised from 1 to 0 while the previous ``window - 1`` generated frames are
held clean (t = 0) as context; with a causal network the context never sees the new frame.

Time convention (CONVENTIONS.md): t in [0, 1], t = 0 data, t = 1 noise.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array

__all__ = ["FrameField", "pyramid_times", "rollout_frames", "sample_frames"]

FrameField = Callable[[Array, Array], Array]
"""``field(x (B, F, ...), t (B, F)) -> velocity (B, F, ...)``."""


def pyramid_times(num_frames: int, num_steps: int, *, stride: int = 0) -> Array:
    """The schedule matrix ``T: (num_steps + stride * (num_frames - 1) + 1, num_frames)``.

    ``T[k, f] = clip(1 - (k - stride * f) / num_steps, 0, 1)``: each frame takes
    ``num_steps`` uniform steps from 1 to 0, frame ``f`` starting ``stride * f`` rows late.

    Args:
      num_frames: ``F``.
      num_steps: steps per frame (positive).
      stride: rows between the starts of consecutive frames, ``0 <= stride``.
    """
    if num_frames < 1 or num_steps < 1 or stride < 0:
        raise ValueError(
            f"need num_frames >= 1, num_steps >= 1, stride >= 0; got {num_frames}, "
            f"{num_steps}, {stride}"
        )
    rows = num_steps + stride * (num_frames - 1)
    # Python floats (float64) per entry, then one float32 array: the same table whatever
    # jax_enable_x64 says.
    table = [
        [min(1.0, max(0.0, 1.0 - (k - stride * f) / num_steps)) for f in range(num_frames)]
        for k in range(rows + 1)
    ]
    return jnp.asarray(table, jnp.float32)


def _frame_shaped(t: Array, x: Array) -> Array:
    """``(B, F)`` -> ``(B, F, 1, ..., 1)`` of rank ``x.ndim``."""
    return t.reshape(*t.shape, *([1] * (x.ndim - 2)))


def sample_frames(field: FrameField, x: Array, times: Array) -> Array:
    """Euler along the rows of ``times`` (module docstring); one network call per row.

    Args:
      field: the per-frame velocity field.
      x: ``(B, F, ...)`` the start (noise where ``times[0]`` is 1, data where it is 0).
      times: ``(R + 1, F)`` schedule, non-increasing down each column.

    Returns:
      ``(B, F, ...)`` at ``times[-1]``.
    """
    times = jnp.asarray(times, jnp.float32)
    if times.ndim != 2 or times.shape[1] != x.shape[1]:
        raise ValueError(f"times must be (rows, F={x.shape[1]}); got {times.shape}")

    def step(x: Array, pair: tuple[Array, Array]) -> tuple[Array, None]:
        t, t_next = pair
        t_batch = jnp.broadcast_to(t, x.shape[:2])
        v = field(x, t_batch).astype(x.dtype)
        return x + _frame_shaped(jnp.broadcast_to(t_next - t, x.shape[:2]), x) * v, None

    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:]))
    return x


def rollout_frames(
    field: FrameField,
    noise: Array,
    *,
    window: int,
    num_steps: int,
    stride: int = 0,
) -> Array:
    """A clip of ``noise.shape[1]`` frames from a model whose window is ``window`` frames.

    The first ``window`` frames follow `pyramid_times` (``stride``); every later frame is
    denoised from its own noise in ``num_steps`` steps with the previous ``window - 1``
    generated frames held clean as context (autoregressive, Chen et al. 2024, sec. 3.2).

    Args:
      field: the per-frame velocity field over clips of at most ``window`` frames.
      noise: ``(B, L, ...)`` standard normal, one slice per output frame (deterministic).
      window: the model's clip length (its training length).
      num_steps: steps per frame.
      stride: the pyramid stride of the first window.

    Returns:
      ``(B, L, ...)`` generated frames.
    """
    length = noise.shape[1]
    first = min(window, length)
    clip = sample_frames(field, noise[:, :first], pyramid_times(first, num_steps, stride=stride))
    frames = [clip[:, f] for f in range(first)]
    context_times = jnp.zeros((num_steps + 1, window - 1), jnp.float32)
    times = jnp.concatenate([context_times, pyramid_times(1, num_steps)], axis=1)
    for f in range(first, length):
        context = jnp.stack(frames[f - window + 1 : f], axis=1)
        clip = jnp.concatenate([context, noise[:, f : f + 1]], axis=1)
        frames.append(sample_frames(field, clip, times)[:, -1])
    return jnp.stack(frames, axis=1)
