"""Moving averages of the parameters: fixed-decay EMAs and EDM2's power-function EMAs.

Fixed decay: ``ema <- decay * ema + (1 - decay) * params`` after every optimiser step. The
averages start as a copy of the initial parameters, never at zero: the seed started from zeros
without bias correction and was at 63% of scale after 10k steps at 0.9999
(willisma/diffuse_nnx).

Power function (Karras et al. 2024, EDM2 Eq. 127; NVlabs/edm2 ``training/phema.py``
``PowerFunctionEMA``): ``ema <- ema + (1 - beta_t) (params - ema)`` with
``beta_t = (1 - 1/t)**(gamma + 1)``, ``t`` the optimiser steps taken including this one and
``gamma`` from the EMA length ``sigma_rel`` (`nnx_train.power_ema`). ``beta_1 = 0``, so the
initial copy is replaced by the parameters after the first step. A step skipped as non-finite
leaves the averages unchanged although ``t`` advances (a negligible change of the profile).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from nnx_train.power_ema import power_ema_weight, sigma_rel_to_gamma

__all__ = ["ema_name", "init_ema", "power_ema_name", "update_ema"]


def ema_name(decay: float) -> str:
    """Key of one fixed-decay average, e.g. ``"ema_0.9999"``."""
    return f"ema_{decay:g}"


def power_ema_name(sigma_rel: float) -> str:
    """Key of one power-function average, e.g. ``"phema_0.05"``."""
    return f"phema_{sigma_rel:g}"


def init_ema(params, decays: Sequence[float], sigma_rels: Sequence[float] = ()) -> dict:
    """One copy of ``params`` per decay and per power-function EMA length (the warm start).

    Args:
      params: the trainable parameters (an ``nnx.State`` or any pytree of arrays).
      decays: values in ``[0, 1)``, e.g. ``(0.9999,)``.
      sigma_rels: EDM2 EMA lengths in ``(0, 0.2887)``, e.g. ``(0.05, 0.10)``; ``()`` for none.

    Returns:
      ``{ema_name(decay) or power_ema_name(sigma_rel): copy of params}``.
    """
    for decay in decays:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}; 0.9999 is usual.")
    sigma_rel_to_gamma(tuple(sigma_rels))  # raises for lengths outside (0, 0.2887)
    names = [ema_name(d) for d in decays] + [power_ema_name(s) for s in sigma_rels]
    return {name: jax.tree.map(jnp.copy, params) for name in names}


def update_ema(
    ema: dict,
    params,
    decays: Sequence[float],
    sigma_rels: Sequence[float] = (),
    step: jax.Array | int = 1,
) -> dict:
    """Advances every average by one step (float32 arithmetic, parameter dtype kept).

    Args:
      ema: the averages (`init_ema`).
      params: the parameters after this optimiser step.
      decays: the fixed decays of ``ema``.
      sigma_rels: the power-function EMA lengths of ``ema``.
      step: int scalar ``t >= 1``, optimiser steps taken including this one (power EMAs only).

    Returns:
      The new ``ema`` dict.
    """
    new = {}
    for decay in decays:
        name = ema_name(decay)
        new[name] = jax.tree.map(
            lambda e, p, d=decay: (
                d * e.astype(jnp.float32) + (1.0 - d) * p.astype(jnp.float32)
            ).astype(e.dtype),
            ema[name],
            params,
        )
    for sigma_rel in sigma_rels:
        name = power_ema_name(sigma_rel)
        weight = power_ema_weight(sigma_rel, step)
        new[name] = jax.tree.map(
            lambda e, p, w=weight: (
                e.astype(jnp.float32) + w * (p.astype(jnp.float32) - e.astype(jnp.float32))
            ).astype(e.dtype),
            ema[name],
            params,
        )
    return new
