"""Diffusion Forcing on clips (Chen et al. 2024): per-frame times in training, rollout in sampling.

Training: `nnx_objectives.DiffusionForcingObjective` (independent uniform time per frame,
linear path, velocity) with class dropout for guidance. Sampling: ``objective.rollout_frames``
frames with `nnx_samplers.rollout_frames`: the first ``data.num_frames`` (the model's
window) along a pyramid of stride ``objective.pyramid_stride``, each later frame denoised
with the previous frames held clean as context; ``sampler.num_steps`` Euler steps per frame
and classifier-free guidance of ``config.guidance`` on the velocity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import nnx_objectives as no
import nnx_samplers as sp
from nnx_train import tasks
from nnx_train.constructors import reject_ignored
from nnx_train.errors import ConfigError
from nnx_train.recipes.inputs import RecipeInputs

__all__ = ["diffusion_forcing_task"]


def _check(inputs: RecipeInputs) -> None:
    config = inputs.config
    if len(inputs.data_shape) != 4:
        raise ConfigError(
            f"the diffusion_forcing recipe trains on clips (F, H, W, C); data.name="
            f"{config.data.name!r} gives examples of shape {inputs.data_shape}. Use "
            "data.name='moving_digits' (configs/moving_digits.py)."
        )
    used_by = "the diffusion_forcing recipe (Euler from t = 1 per frame)"
    reject_ignored("sampler", config.sampler, used_by, solver="euler", grid="uniform")
    reject_ignored("sampler", config.sampler, used_by, t_start=1.0)
    reject_ignored("", config, used_by, time_shift=1.0)
    if config.guidance.name not in ("cfg", "none"):
        raise ConfigError(f"guidance.name={config.guidance.name!r}: use 'cfg' or 'none'.")
    reject_ignored("guidance", config.guidance, used_by, interval=(0.0, 1.0), guided_channels=0)


def _generate(inputs: RecipeInputs):
    config, section = inputs.config, inputs.config.objective
    window = inputs.data_shape[0]
    length = section.rollout_frames
    scale = config.guidance.scale if config.guidance.name == "cfg" else 1.0
    null_label = inputs.null_label

    def generate(model, frozen, labels: jax.Array, key: jax.Array) -> jax.Array:
        del frozen
        noise = jax.random.normal(key, (labels.shape[0], length, *inputs.data_shape[1:]))

        def field(x: jax.Array, t: jax.Array) -> jax.Array:
            cond = model(x, t, labels)
            if scale == 1.0:
                return cond
            uncond = model(x, t, jnp.full_like(labels, null_label))
            return sp.combine_guidance(cond, uncond, scale)

        return sp.rollout_frames(
            field,
            noise,
            window=window,
            num_steps=config.sampler.num_steps,
            stride=section.pyramid_stride,
        )

    return generate


def diffusion_forcing_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """Diffusion Forcing with class dropout; samples rollouts of ``objective.rollout_frames``."""
    _check(inputs)
    section = inputs.config.objective
    if section.rollout_frames < inputs.data_shape[0]:
        raise ConfigError(
            f"objective.rollout_frames={section.rollout_frames} is shorter than the training "
            f"clip ({inputs.data_shape[0]} frames); set it to at least that."
        )
    objective = no.ClassDropout(
        no.DiffusionForcingObjective(),
        probability=section.class_dropout,
        null_label=inputs.null_label,
    )
    return tasks.GeneratorTask(
        build_trainable=inputs.make_network,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=_generate(inputs),
        num_classes=inputs.num_classes,
    )
