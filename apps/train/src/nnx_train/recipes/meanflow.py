"""MeanFlow recipe: average-velocity training with guidance folded in, one-step jump sampling.

Geng et al., "Mean Flows for One-step Generative Modeling" (2025), Eq. 6-9 and Sec. 4.2.
The sampler is always `EulerJump` on a uniform grid from t = 1 without shift or sampling-time
guidance, so ``sampler.solver``, ``grid``, ``t_start``, ``guidance.*`` and ``time_shift`` must
say so (anything else would be silently ignored).
"""

from __future__ import annotations

from ml_collections import ConfigDict

import nnx_objectives as no
import nnx_samplers as sp
from nnx_objectives.meanflow import DROP_PLACEMENTS
from nnx_train import tasks
from nnx_train.constructors import reject_ignored, unknown_name
from nnx_train.errors import ConfigError
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.sampling import make_meanflow_generate

__all__ = ["meanflow_task"]

USED_BY = "the meanflow recipe (it samples with euler_jump on a uniform grid, unguided)"


def _check_sampler(inputs: RecipeInputs) -> None:
    config = inputs.config
    reject_ignored("", config, USED_BY, time_shift=1.0)
    reject_ignored(
        "sampler",
        config.sampler,
        USED_BY,
        solver="euler_jump",
        grid="uniform",
        t_start=1.0,
        diffusion="sigma",
    )
    reject_ignored(
        "guidance",
        config.guidance,
        USED_BY,
        name="none",
        scale=1.0,
        interval=(0.0, 1.0),
        guided_channels=0,
    )


def _meanflow_times(times: ConfigDict) -> no.LogitNormalTime:
    """MeanFlow samples (r, t) from a logit-normal law (Geng et al. 2025, sec. 4.3)."""
    if times.name != "logit_normal":
        raise ConfigError(
            f"objective.time_distribution.name={times.name!r}: the meanflow recipe samples "
            "(r, t) from a logit-normal law; set --config.objective.time_distribution.name="
            "logit_normal."
        )
    return no.LogitNormalTime(mean=times.mean, std=times.std)


def meanflow_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """MeanFlow objective (logit-normal times, adaptive weighting, optional CFG in training)."""
    _check_sampler(inputs)
    section = inputs.config.objective
    if section.drop_placement not in DROP_PLACEMENTS:
        raise unknown_name("objective.drop_placement", section.drop_placement, DROP_PLACEMENTS)
    guidance = None
    if section.omega != 1.0 or section.kappa != 0.0 or section.class_dropout > 0:
        guidance = no.MeanFlowGuidance(
            null_label=inputs.null_label,
            omega=section.omega,
            kappa=section.kappa,
            t_min=section.guidance_t_min,
            t_max=section.guidance_t_max,
            label_dropout=section.class_dropout,
            drop_placement=section.drop_placement,
        )
    objective = no.MeanFlowObjective(
        time_distribution=_meanflow_times(section.time_distribution),
        equal_times_fraction=section.equal_times_fraction,
        adaptive_power=section.adaptive_power,
        adaptive_constant=section.adaptive_constant,
        guidance=guidance,
    )
    grid = sp.UniformGrid(inputs.config.sampler.num_steps)
    return tasks.GeneratorTask(
        build_trainable=inputs.make_network,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=make_meanflow_generate(grid=grid, data_shape=inputs.data_shape),
        num_classes=inputs.num_classes,
    )
