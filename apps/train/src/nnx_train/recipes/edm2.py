"""EDM2 recipe: EDM preconditioning and loss with the learned log-variance weighting.

Karras et al., "Analyzing and Improving the Training Dynamics of Diffusion Models" (2024),
Eq. 21; EDM preconditioning from Karras et al. (2022), Table 1. The preconditioned network
predicts x0; sampling runs it on the linear path through ``config.sampler``.
"""

from __future__ import annotations

from flax import nnx

import nnx_objectives as no
from nnx_train import tasks
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.sampler_config import flow_generate

__all__ = ["edm2_task"]


def edm2_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """`UncertaintyWeighted(EDMObjective)` on `WithLogVar(EDMPrecond(network), LogVarHead)`."""
    config, section = inputs.config, inputs.config.objective
    objective = no.UncertaintyWeighted(
        no.EDMObjective(P_mean=section.P_mean, P_std=section.P_std, sigma_data=section.sigma_data)
    )

    def make_edm2() -> nnx.Module:
        precond = no.EDMPrecond(inputs.make_network(), sigma_data=section.sigma_data)
        head = no.LogVarHead(section.logvar_channels, rngs=nnx.Rngs(config.seed + 3))
        return no.WithLogVar(precond, head)

    return tasks.GeneratorTask(
        build_trainable=make_edm2,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=flow_generate(
            config, inputs.data_shape, prediction="x0", path="linear", null_label=inputs.null_label
        ),
        num_classes=inputs.num_classes,
    )
