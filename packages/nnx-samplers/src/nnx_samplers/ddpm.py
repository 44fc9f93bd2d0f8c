"""Discrete DDPM: the linear beta schedule, DiT's respaced grid, ancestral and DDIM samplers.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise. DDPM's integer step
``k = 0 .. T-1`` (Ho et al. 2020; ``x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) eps`` with
``abar_k = prod_{i <= k} (1 - beta_i)``) is the time ``t = (k + 1) / T``; ``t = 0`` is the
clean data (``abar = 1``), so the last step of every grid ends there. Networks trained on
integer steps (DiT, ``time_scale = T``) are called with their *network time* ``k / T``
(they see ``k``), which :meth:`DDPMSchedule.network_time` computes.

The samplers see a *prediction* ``predict(x, s) -> out`` (not a velocity): ``out`` is the
noise ``eps`` with the channels of ``x``, or ``eps`` followed by the variance values ``v`` in
``[-1, 1]`` (``2 C`` channels, improved DDPM's learned range, Nichol & Dhariwal 2021 eq. 15),
and ``s`` is the network time. Guidance wraps the network as for any other prediction:
``ClassifierFreeGuidance(dit, labels, null_label, scale, guided_channels=C)`` guides the
noise channels only (DiT's own ``forward_with_cfg`` guides 3 of them:
``DIT_LEGACY_GUIDED_CHANNELS``). Upstream: facebookresearch/DiT ``diffusion/
gaussian_diffusion.py`` (``p_mean_variance``, ``p_sample``, ``ddim_sample``) and
``diffusion/respace.py`` (``space_timesteps``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import expand_time
from nnx_samplers.grids import ArrayGrid

__all__ = ["DDIM", "DDPMAncestral", "DDPMSchedule", "ddpm_grid", "dit_respaced_steps"]

_VARIANCES = ("learned_range", "fixed_small", "fixed_large")


@dataclass(frozen=True)
class DDPMSchedule:
    """DDPM's linear beta schedule: ``beta_k = linspace(beta_start, beta_end, T)[k]``.

    DiT, ADM and improved DDPM's ImageNet models use the defaults (Ho et al. 2020, sec. 4:
    1e-4 to 0.02 over T = 1000 steps). Tables are computed in float64 as DiT does.

    Attributes:
      num_train_steps: ``T``.
      beta_start: ``beta_0``.
      beta_end: ``beta_{T-1}``.
    """

    num_train_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.num_train_steps < 2 or not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(
                "DDPMSchedule needs num_train_steps >= 2 and 0 < beta_start <= beta_end < 1; got "
                f"{self.num_train_steps}, {self.beta_start}, {self.beta_end}."
            )

    def betas(self) -> tuple[float, ...]:
        """``beta_k`` for ``k = 0 .. T-1``, in float64 as ``np.linspace`` computes them."""
        step = (self.beta_end - self.beta_start) / (self.num_train_steps - 1)
        betas = [self.beta_start + k * step for k in range(self.num_train_steps)]
        betas[-1] = self.beta_end
        return tuple(betas)

    def alphas_cumprod(self) -> tuple[float, ...]:
        """``abar_k`` for ``k = 0 .. T-1`` (float64, the sequential product of ``np.cumprod``)."""
        return tuple(itertools.accumulate((1.0 - b for b in self.betas()), operator.mul))

    def step_index(self, t: Array) -> Array:
        """Integer step ``k = round(t T) - 1`` of a time (``-1`` for the data, ``t = 0``)."""
        return jnp.round(jnp.asarray(t) * self.num_train_steps).astype(jnp.int32) - 1

    def network_time(self, t: Array) -> Array:
        """``k / T``: what a network trained on integer steps takes (``time_scale = T``)."""
        t = jnp.asarray(t)
        return (self.step_index(t).astype(t.dtype)) / self.num_train_steps

    def alpha_bar(self, t: Array) -> Array:
        """``abar`` at time ``t`` (scalar or any shape); 1 at ``t = 0``."""
        t = jnp.asarray(t)
        table = jnp.asarray((1.0, *self.alphas_cumprod()), t.dtype)
        return table[self.step_index(t) + 1]


def dit_respaced_steps(num_train_steps: int, num_steps: int) -> list[int]:
    """Integer steps kept by DiT's ``space_timesteps(T, str(num_steps))``, increasing.

    One section: stride ``(T - 1) / (num_steps - 1)`` accumulated in floating point and rounded
    with Python's ``round`` (``respace.py``); 250 of 1000 gives ``0, 4, 8, ..., 999``.
    """
    if not 2 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must lie in [2, {num_train_steps}]; got {num_steps}.")
    stride = (num_train_steps - 1) / (num_steps - 1)
    position, taken = 0.0, []
    for _ in range(num_steps):
        taken.append(round(position))
        position += stride
    return taken


def ddpm_grid(steps: Sequence[int] | int = 250, schedule: DDPMSchedule | None = None) -> ArrayGrid:
    """Time grid of a respaced DDPM: ``(k + 1) / T`` for the kept steps, newest first, then 0.

    Args:
      steps: the number of respaced steps (DiT's spacing, :func:`dit_respaced_steps`; DiT
        evaluates with 250) or the integer steps themselves in any order (e.g. a diffusers
        scheduler's ``timesteps``).
      schedule: the training schedule (its ``T``); default ``DDPMSchedule()``.
    """
    schedule = schedule or DDPMSchedule()
    T = schedule.num_train_steps
    taken = dit_respaced_steps(T, steps) if isinstance(steps, int) else [int(k) for k in steps]
    if not all(0 <= k < T for k in taken) or len(set(taken)) != len(taken):
        raise ValueError(f"DDPM steps must be distinct integers in [0, {T}); got {taken}.")
    return ArrayGrid([(k + 1) / T for k in sorted(taken, reverse=True)] + [0.0])


def _split(out: Array, x: Array) -> tuple[Array, Array | None]:
    channels = x.shape[-1]
    if out.shape[-1] == 2 * channels:
        return out[..., :channels], out[..., channels:]
    if out.shape[-1] != channels:
        raise ValueError(
            f"a DDPM prediction has C = {channels} (eps) or 2C (eps, variance) channels; got "
            f"{out.shape[-1]}."
        )
    return out, None


def _predictions(schedule, predict, x, t, t_next):
    """Network output split into ``eps`` and ``v``; ``abar`` at both ends; ``x0_hat``."""
    eps, values = _split(predict(x, schedule.network_time(t)), x)
    ab_t = expand_time(schedule.alpha_bar(t), x)
    ab_prev = expand_time(schedule.alpha_bar(t_next), x)
    x0 = (x - jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(ab_t)
    return eps, values, ab_t, ab_prev, x0


def _require_key(key: Array | None, name: str) -> Array:
    if key is None:
        raise ValueError(f"{name} is stochastic: pass key=jax.random.key(seed) to sample().")
    return key


@dataclass(frozen=True)
class DDPMAncestral:
    """DDPM ancestral sampling, ``x_prev ~ N(mu(x, x0_hat), var)`` (Ho et al. 2020, eq. 6-7, 11).

    On a respaced grid (``ddpm_grid(250)``, DiT's evaluation) each step from ``t`` to ``t_next``
    uses ``beta = 1 - abar_t / abar_prev``; the posterior mean is
    ``beta sqrt(abar_prev) / (1 - abar_t) x0_hat + sqrt(1 - beta) (1 - abar_prev) / (1 - abar_t) x``
    and the variance ``"learned_range"`` is ``exp(f log beta + (1 - f) log beta_tilde)`` with
    ``f = (v + 1) / 2`` and ``beta_tilde = beta (1 - abar_prev) / (1 - abar_t)`` (Nichol &
    Dhariwal 2021, eq. 15). The step that ends at data adds no noise. One prediction per step.

    Attributes:
      schedule: the training schedule.
      variance: ``"learned_range"`` (needs a ``2 C``-channel prediction), ``"fixed_small"``
        (``beta_tilde``) or ``"fixed_large"`` (``beta``).
    """

    schedule: DDPMSchedule = field(default_factory=DDPMSchedule)
    variance: str = "learned_range"

    def __post_init__(self) -> None:
        if self.variance not in _VARIANCES:
            raise ValueError(f"variance must be one of {_VARIANCES}; got {self.variance!r}.")

    def init(self, field, x: Array, times: Array) -> tuple[()]:
        return ()

    def step(self, field, x, state, t, t_next, key=None):
        key = _require_key(key, "DDPMAncestral")
        _, values, ab_t, ab_prev, x0 = _predictions(self.schedule, field, x, t, t_next)
        beta = 1.0 - ab_t / ab_prev
        mean = (jnp.sqrt(ab_prev) * beta * x0 + jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) * x) / (
            1.0 - ab_t
        )
        # beta_tilde is 0 on the last step (abar_prev = 1), where no noise is added anyway.
        log_small = jnp.log(jnp.maximum(beta * (1.0 - ab_prev) / (1.0 - ab_t), 1e-20))
        if self.variance == "learned_range":
            if values is None:
                raise ValueError(
                    'variance="learned_range" needs a prediction with 2C channels (eps, v); '
                    'use "fixed_small" for an eps-only network.'
                )
            fraction = (values + 1.0) / 2.0
            log_var = fraction * jnp.log(beta) + (1.0 - fraction) * log_small
        else:
            log_var = log_small if self.variance == "fixed_small" else jnp.log(beta)
        noise = jax.random.normal(key, x.shape, mean.dtype)
        x_next = jnp.where(t_next == 0, mean, mean + jnp.exp(0.5 * log_var) * noise)
        return x_next, state, jnp.int32(1)


@dataclass(frozen=True)
class DDIM:
    """DDIM (Song et al. 2021, eq. 12): ``x_prev = sqrt(abar_prev) x0_hat + dir + sigma z``.

    ``sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev)`` and
    ``dir = sqrt(1 - abar_prev - sigma^2) eps``; ``eta = 0`` is deterministic, ``eta = 1`` has
    DDPM's ``beta_tilde`` variance. A ``2 C``-channel prediction's variance half is ignored.
    One prediction per step; the step to data (``abar_prev = 1``) has ``sigma = 0``.

    Attributes:
      schedule: the training schedule.
      eta: stochasticity in [0, 1]; above 0 the sampler needs a key.
    """

    schedule: DDPMSchedule = field(default_factory=DDPMSchedule)
    eta: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDIM.eta must lie in [0, 1]; got {self.eta}.")

    def init(self, field, x: Array, times: Array) -> tuple[()]:
        return ()

    def step(self, field, x, state, t, t_next, key=None):
        eps, _, ab_t, ab_prev, x0 = _predictions(self.schedule, field, x, t, t_next)
        sigma = self.eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * jnp.sqrt(1.0 - ab_t / ab_prev)
        x_next = jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
        if self.eta > 0:
            key = _require_key(key, "DDIM with eta > 0")
            x_next = x_next + sigma * jax.random.normal(key, x.shape, x_next.dtype)
        return x_next, state, jnp.int32(1)
