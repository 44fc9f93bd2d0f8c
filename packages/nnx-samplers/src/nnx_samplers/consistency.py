"""Few-step sampling by alternating denoising and re-noising (consistency models, DMD2).

A denoiser maps a noisy state to a clean-data estimate, ``denoise(x_t, t) -> x0_hat``
(``t`` a ``(B,)`` time). Multistep consistency sampling (Song et al. 2023, "Consistency
Models", Algorithm 1) and DMD2's multi-step generator (Yin et al. 2024, "Improved Distribution
Matching Distillation", Sec. 4.5) both run

    x_{t_0} = sigma(t_0) * noise_scale * eps_0
    for i = 0 .. N-1:
        x0_hat = denoise(x_{t_i}, t_i)
        x_{t_{i+1}} = alpha(t_{i+1}) x0_hat + sigma(t_{i+1}) noise_scale eps_{i+1}   (i < N-1)
    return x0_hat

on a decreasing list of times ``t_0 = 1 > t_1 > ... > t_{N-1} > 0``: ``N`` network
evaluations (NFE). Time convention: ``t`` in [0, 1], 0 = data, 1 = noise; the path gives
``alpha`` and ``sigma``. ``noise_scale`` is the noise's standard deviation relative to the
path's: 1 for the linear path of flow matching; TrigFlow (Lu & Song 2024, sCM) corrupts as
``cos(s) x0 + sin(s) sigma_d eps``, which is ``GVPPath`` with ``noise_scale = sigma_d``.

`backward_simulation` is the training-time half of the same loop (DMD2 Sec. 4.5): the
generator's own samples are re-noised to ``t_k`` so that a multi-step generator is trained on
the inputs it meets at inference, not on noised real images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import expand_time
from nnx_samplers.paths import LinearPath, Path

__all__ = [
    "SCM_TWO_STEP_MID_T",
    "Denoiser",
    "backward_simulation",
    "consistency_sample",
    "uniform_step_times",
]

LINEAR = LinearPath()

Denoiser = Callable[[Array, Array], Array]
"""``denoise(x_t (B, ...), t (B,)) -> x0_hat (B, ...)``, ``t`` 0 = data, 1 = noise."""

# sCM (Lu & Song 2024, Sec. 5 / Appendix): two-step sampling re-noises at the TrigFlow angle
# s = 1.1; in our time t = 2 s / pi.
SCM_TWO_STEP_MID_T = 2.0 * 1.1 / math.pi


def uniform_step_times(num_steps: int) -> tuple[float, ...]:
    """``(1, 1 - 1/N, ..., 1/N)``: DMD2's evenly spaced generator times.

    DMD2's SDXL 4-step generator uses the 1000-step timesteps 999, 749, 499, 249 (Sec. 5.2),
    i.e. ``t = 1, 0.75, 0.5, 0.25`` in our convention.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    return tuple(1.0 - i / num_steps for i in range(num_steps))


def _check_times(times: Sequence[float]) -> tuple[float, ...]:
    times = tuple(float(t) for t in times)
    if not times or any(not 0.0 < t <= 1.0 for t in times):
        raise ValueError(f"times must be a non-empty list in (0, 1], got {times}.")
    if any(a <= b for a, b in zip(times, times[1:])):
        raise ValueError(f"times must decrease (1 = noise first), got {times}.")
    return times


def _renoise(path: Path, x0: Array, eps: Array, t: float, noise_scale: float) -> Array:
    t = jnp.asarray(t, jnp.float32)
    return path.alpha(t) * x0 + path.sigma(t) * noise_scale * eps


def _states(
    denoise: Denoiser,
    noise: Array,
    times: tuple[float, ...],
    key: Array,
    path: Path,
    noise_scale: float,
    *,
    final: bool = True,
) -> tuple[list[Array], Array | None]:
    """The states ``x_{t_i}`` visited (one per time) and the last ``x0_hat`` (``None``
    without ``final``: the denoiser is then not applied to the last state)."""
    batch = noise.shape[0]
    x_t = _renoise(path, jnp.zeros_like(noise), noise, times[0], noise_scale)
    keys = jax.random.split(key, max(len(times) - 1, 1))
    states = [x_t]
    if not final and len(times) == 1:
        return states, None
    x0_hat = denoise(x_t, jnp.full((batch,), times[0], jnp.float32))
    for index, t_next in enumerate(times[1:]):
        eps = jax.random.normal(keys[index], noise.shape, noise.dtype)
        x_t = _renoise(path, x0_hat, eps, t_next, noise_scale)
        states.append(x_t)
        if final or index < len(times) - 2:
            x0_hat = denoise(x_t, jnp.full((batch,), t_next, jnp.float32))
    return states, (x0_hat if final else None)


def consistency_sample(
    denoise: Denoiser,
    noise: Array,
    *,
    times: Sequence[float],
    key: Array,
    path: Path = LINEAR,
    noise_scale: float = 1.0,
) -> Array:
    """Multistep consistency sampling: ``len(times)`` denoiser evaluations.

    Args:
      denoise: ``denoise(x_t, t) -> x0_hat`` (a consistency function or a one-step generator).
      noise: ``(B, ...)`` standard normal noise (the start ``x_1 = noise_scale * noise`` when
        ``sigma(1) = 1``).
      times: decreasing times in (0, 1], first normally 1 (e.g. ``(1.0,)`` or
        ``(1.0, SCM_TWO_STEP_MID_T)``).
      key: PRNG key of the re-noising draws.
      path: the path that re-noises (linear for flow matching, GVP for TrigFlow).
      noise_scale: noise deviation relative to the path (TrigFlow: ``sigma_d``).

    Returns:
      ``(B, ...)`` the last clean-data estimate.
    """
    return _states(denoise, noise, _check_times(times), key, path, noise_scale)[1]


def backward_simulation(
    denoise: Denoiser,
    noise: Array,
    *,
    times: Sequence[float],
    key: Array,
    path: Path = LINEAR,
    noise_scale: float = 1.0,
) -> tuple[Array, Array]:
    """DMD2's backward simulation (Sec. 4.5): a generator input at a random step of ``times``.

    Each example draws its own step ``k`` uniformly from ``0 .. N-1``, runs the generator
    (under stop-gradient) from noise through ``times[:k]`` and returns the re-noised state
    ``x_{t_k}`` and ``t_k``; the caller applies the generator to them with gradients. All
    ``N - 1`` intermediate generator calls are made and the states selected per example
    (simpler under ``jit`` than a per-example loop length; ``N <= 4`` in DMD2).

    Args:
      denoise: the generator ``denoise(x_t, t) -> x0_hat``.
      noise: ``(B, ...)`` standard normal noise.
      times: the generator's decreasing times (``uniform_step_times(N)``).
      key: PRNG key (step choice and re-noising).
      path: the path that re-noises (linear).
      noise_scale: noise deviation relative to the path.

    Returns:
      ``(x_t (B, ...), t (B,))``, both without gradient.
    """
    times = _check_times(times)
    key_step, key_noise = jax.random.split(key)
    batch = noise.shape[0]
    step = jax.random.randint(key_step, (batch,), 0, len(times))
    states, _ = _states(denoise, noise, times, key_noise, path, noise_scale, final=False)
    x_t = states[0]
    for index, state in enumerate(states[1:], start=1):
        x_t = jnp.where(expand_time(step == index, noise), state, x_t)
    t = jnp.asarray(times, jnp.float32)[step]
    return jax.lax.stop_gradient(x_t), t
