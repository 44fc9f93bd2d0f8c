"""Guidance written once: classifier-free guidance and autoguidance as wrappers around a network.

Time convention: ``t`` in [0, 1], ``t = 0`` is data, ``t = 1`` is noise. Every wrapper turns a
network ``model(x_t, t, y)`` into a prediction ``g(x, t)`` in the network's own output space
(velocity, noise, x0, ...); a velocity network's wrapper is directly a vector field, any other
goes through an adapter (``VelocityFromNoise(ClassifierFreeGuidance(...))``). Guidance is a
combination with weights summing to one, so it commutes with the affine adapters.

The single formula (Ho & Salimans 2022; Karras et al. 2024 for autoguidance)::

    g = g_weak + w (g_cond - g_weak) = g_cond + (w - 1) (g_cond - g_weak)

is written in the second form so that ``w = 1`` returns the conditional output exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import Array

from nnx_samplers.fields import Network, batch_time, expand_time

__all__ = [
    "DIT_LEGACY_GUIDED_CHANNELS",
    "AutoGuidance",
    "ClassifierFreeGuidance",
    "GuidanceInterval",
    "combine_guidance",
]

DIT_LEGACY_GUIDED_CHANNELS = 3
"""DiT's and SiT's ``forward_with_cfg`` guide only latent channels 0-2 of 4 (kept to reproduce
their FIDs); LightningDiT's (hustvl ``models/lightningdit.py``) also guides only the first 3,
of 32 VA-VAE channels."""


@dataclass(frozen=True)
class GuidanceInterval:
    """Closed time interval ``[t_lo, t_hi]`` in which guidance is applied (Kynkaanniemi et al. 2024).

    Outside it the wrapper returns the conditional output. REPA's ``guidance_high = 0.7``
    is ``GuidanceInterval(0.0, 0.7)`` here: the noisiest 30% of the path stays unguided.

    Attributes:
      t_lo: lower end, in [0, 1].
      t_hi: upper end, in [t_lo, 1].
    """

    t_lo: float
    t_hi: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.t_lo <= self.t_hi <= 1.0:
            raise ValueError(
                f"GuidanceInterval needs 0 <= t_lo <= t_hi <= 1; got [{self.t_lo}, {self.t_hi}]. "
                "Times use t = 0 for data and t = 1 for noise."
            )

    def contains(self, t: Array) -> Array:
        t = jnp.asarray(t)
        return (t >= self.t_lo) & (t <= self.t_hi)


def combine_guidance(
    cond: Array,
    weak: Array,
    scale: Array | float,
    *,
    guided_channels: int | None = None,
) -> Array:
    """``cond + (scale - 1) (cond - weak)`` on all channels, or on the first ``guided_channels``.

    Args:
      cond: conditional output ``(B, ..., C)``.
      weak: unconditional (CFG) or weaker-model (autoguidance) output, same shape.
      scale: guidance weight ``w``, scalar or ``(B,)``; 1 means no guidance.
      guided_channels: ``None`` guides every channel (default, as diffusers does); an int
        ``k`` guides channels ``[0, k)`` and copies the conditional output into the rest,
        DiT's legacy behaviour with ``k = DIT_LEGACY_GUIDED_CHANNELS``.

    Returns:
      Guided output with the shape and dtype of ``cond``.
    """
    scale = expand_time(scale, cond)
    guided = (cond + (scale - 1.0) * (cond - weak)).astype(cond.dtype)
    if guided_channels is None:
        return guided
    num_channels = cond.shape[-1]
    if not 0 < guided_channels <= num_channels:
        raise ValueError(
            f"guided_channels must lie in [1, {num_channels}] (the output has {num_channels} "
            f"channels in its last axis); got {guided_channels}."
        )
    return jnp.concatenate([guided[..., :guided_channels], cond[..., guided_channels:]], axis=-1)


def _guide_in_interval(guided_fn, cond_fn, interval: GuidanceInterval | None, x, t, decision_time):
    """Applies ``guided_fn`` inside the interval and ``cond_fn`` outside it.

    The interval is tested at ``decision_time`` (``t`` unless a solver fixed it, see
    ``decided_at``). A scalar time (what :func:`~nnx_samplers.sample` passes) selects one
    branch with ``lax.cond``, so unguided steps cost a single forward pass; per-sample times
    select elementwise.
    """
    t = jnp.asarray(t)
    decide = t if decision_time is None else jnp.asarray(decision_time)
    if interval is None:
        return guided_fn(x, t, None)
    if decide.ndim == 0:
        return jax.lax.cond(
            interval.contains(decide), lambda x: guided_fn(x, t, None), lambda x: cond_fn(x, t), x
        )
    return guided_fn(x, t, interval.contains(batch_time(decide, x)))


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Classifier-free guidance with the conditional and null passes in one doubled batch.

    ``g(x, t) = g_c + (w - 1) (g_c - g_null)`` where ``g_c = model(x, t, y)`` and
    ``g_null = model(x, t, null_label)``, both from one call on a ``(2B, ...)`` batch
    (Ho & Salimans 2022; their w is our w - 1).

    Attributes:
      model: network ``model(x_t: (B, H, W, C), t: (B,), y: (B,)) -> (B, H, W, C_out)``.
        For a learned-sigma DiT, slice the output to its first C channels first.
      labels: ``(B,)`` int32 class labels.
      null_label: the label of the unconditional class (``num_classes`` for DiT); required,
        never a literal inside the library.
      scale: guidance weight ``w``, scalar or ``(B,)``; 1 is the conditional output.
      interval: guide only for ``t`` in ``[t_lo, t_hi]``; ``None`` guides every step.
      guided_channels: ``None`` (default) guides all channels; ``DIT_LEGACY_GUIDED_CHANNELS``
        reproduces DiT/SiT's 3-of-4-channel guidance (published FIDs; 1.5 on 3 channels
        behaves like about 1.375 on 4) and LightningDiT's 3-of-32 (its published scales 6.7 and
        10 are for 3 guided channels; its interval ``t >= 0.11`` with t = 1 data is
        ``GuidanceInterval(0.0, 0.89)`` here).
      decision_time: the time at which ``interval`` is tested; ``None`` (default) tests the
        evaluation time. Set by solvers through :meth:`decided_at`.
    """

    model: Network
    labels: Array
    null_label: int | Array
    scale: float | Array
    interval: GuidanceInterval | None = None
    guided_channels: int | None = None
    decision_time: Array | None = None

    def decided_at(self, time: Array) -> ClassifierFreeGuidance:
        """This wrapper with the interval tested at ``time`` (REPA's Heun corrector)."""
        return dataclasses.replace(self, decision_time=time)

    def __call__(self, x: Array, t: Array) -> Array:
        def guided(x: Array, t: Array, inside: Array | None) -> Array:
            t_batch = batch_time(t, x)
            labels = jnp.asarray(self.labels)
            null = jnp.full_like(labels, self.null_label)
            both = self.model(
                jnp.concatenate([x, x], axis=0),
                jnp.concatenate([t_batch, t_batch], axis=0),
                jnp.concatenate([labels, null], axis=0),
            )
            cond, uncond = jnp.split(both, 2, axis=0)
            out = combine_guidance(cond, uncond, self.scale, guided_channels=self.guided_channels)
            if inside is None:
                return out
            return jnp.where(expand_time(inside, cond), out, cond)

        def conditional(x: Array, t: Array) -> Array:
            return self.model(x, batch_time(t, x), jnp.asarray(self.labels))

        return _guide_in_interval(guided, conditional, self.interval, x, t, self.decision_time)


@dataclass(frozen=True)
class AutoGuidance:
    """Autoguidance (Karras et al. 2024): guide a model with a weaker version of itself.

    ``g(x, t) = g_main + (w - 1) (g_main - g_guide)``, with ``g_main = model(x, t, y)`` and
    ``g_guide = guide_model(x, t, guide_labels)``; two forward passes. The guide is a
    smaller and/or less-trained model with the same conditioning (``guide_labels`` defaults
    to ``labels``). EDM2's CFG with a separate unconditional network is the same wrapper
    with ``guide_labels`` set to the null labels.

    Attributes:
      model: main network ``model(x_t, t, y)``.
      guide_model: weaker network with the same signature and output space.
      labels: ``(B,)`` int32 class labels for the main model.
      scale: guidance weight ``w`` (EDM2-S/512: 2.10; RAE: 1.42), scalar or ``(B,)``.
      interval: guide only for ``t`` in ``[t_lo, t_hi]``; ``None`` guides every step.
      guide_labels: labels for the guide; ``None`` means ``labels``.
      decision_time: the time at which ``interval`` is tested (``None``: the evaluation time).
    """

    model: Network
    guide_model: Network
    labels: Array
    scale: float | Array
    interval: GuidanceInterval | None = None
    guide_labels: Array | None = None
    decision_time: Array | None = None

    def decided_at(self, time: Array) -> AutoGuidance:
        """This wrapper with the interval tested at ``time`` (REPA's Heun corrector)."""
        return dataclasses.replace(self, decision_time=time)

    def __call__(self, x: Array, t: Array) -> Array:
        labels = jnp.asarray(self.labels)
        guide_labels = labels if self.guide_labels is None else jnp.asarray(self.guide_labels)

        def guided(x: Array, t: Array, inside: Array | None) -> Array:
            t_batch = batch_time(t, x)
            main = self.model(x, t_batch, labels)
            weak = self.guide_model(x, t_batch, guide_labels)
            out = combine_guidance(main, weak, self.scale)
            if inside is None:
                return out
            return jnp.where(expand_time(inside, main), out, main)

        def unguided(x: Array, t: Array) -> Array:
            return self.model(x, batch_time(t, x), labels)

        return _guide_in_interval(guided, unguided, self.interval, x, t, self.decision_time)
