"""Optimiser and learning-rate schedule: optax AdamW behind warm-up, decay and clipping.

``tx = chain(clip_by_global_norm(c), adamw(schedule, b1, b2, eps, weight_decay))``; the
schedule is a warm-up (a linear ramp from 0 to the peak, or the peak held constant) followed by
a constant, cosine or linear decay (RAE stage 2: 2e-4 held for 40 epochs, then linear decay to
2e-5; RAE ``src/utils/optim_utils.py``, ``warmup_from_zero: false``).
"""

from __future__ import annotations

import optax

__all__ = ["make_optimizer", "make_schedule"]

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear", "inverse_sqrt")


def make_schedule(
    *,
    name: str,
    peak_learning_rate: float,
    warmup_steps: int,
    decay_steps: int,
    end_learning_rate: float,
    warmup_from_zero: bool = True,
) -> optax.Schedule:
    """Warm-up then decay.

    Args:
      name: ``"constant"``, ``"cosine"`` or ``"linear"`` (the decay after warm-up), or
        ``"inverse_sqrt"`` (EDM2: ``peak * min(step / warmup, 1) / sqrt(max(step / decay_steps,
        1))``, the warm-up multiplying rather than preceding the decay).
      peak_learning_rate: learning rate reached at the end of warm-up.
      warmup_steps: linear ramp from 0 to the peak (0 starts at the peak).
      decay_steps: length of the decay after warm-up (ignored by ``constant``); the rate stays
        at ``end_learning_rate`` afterwards.
      end_learning_rate: final rate of the decaying schedules.
      warmup_from_zero: the warm-up ramps linearly from 0 (``True``) or holds the peak rate
        (``False``: RAE's stage 2, where the "warm-up" only delays the decay).

    Returns:
      ``step -> learning rate``.
    """
    match name:
        case "inverse_sqrt":
            return _inverse_sqrt(peak_learning_rate, warmup_steps, decay_steps)
        case "constant":
            decay = optax.constant_schedule(peak_learning_rate)
        case "cosine":
            decay = optax.cosine_decay_schedule(
                peak_learning_rate,
                max(decay_steps, 1),
                alpha=end_learning_rate / peak_learning_rate if peak_learning_rate else 0.0,
            )
        case "linear":
            decay = optax.linear_schedule(
                peak_learning_rate, end_learning_rate, max(decay_steps, 1)
            )
        case _:
            from nnx_train.errors import ConfigError

            raise ConfigError(f"Unknown schedule.name {name!r}; valid names: {SCHEDULES}.")
    if warmup_steps <= 0:
        return decay
    start = 0.0 if warmup_from_zero else peak_learning_rate
    warmup = optax.linear_schedule(start, peak_learning_rate, warmup_steps)
    return optax.join_schedules([warmup, decay], [warmup_steps])


def _inverse_sqrt(peak: float, warmup_steps: int, decay_steps: int) -> optax.Schedule:
    """EDM2's schedule (Karras et al. 2024, Eq. 16) in steps: ``t_ref = decay_steps``."""
    import jax.numpy as jnp

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        ramp = jnp.minimum(step / max(warmup_steps, 1), 1.0) if warmup_steps > 0 else 1.0
        return peak * ramp / jnp.sqrt(jnp.maximum(step / max(decay_steps, 1), 1.0))

    return schedule


def make_optimizer(
    *,
    schedule: optax.Schedule,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    grad_clip_norm: float,
) -> optax.GradientTransformation:
    """AdamW with optional global-norm clipping (``grad_clip_norm <= 0`` disables it)."""
    adamw = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    if grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adamw)
    return adamw
