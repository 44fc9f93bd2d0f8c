"""EDM recipe: EDM preconditioning and loss (Karras et al. 2022, Table 1).

``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` around the network (``SongUNet``,
``DhariwalUNet`` or any ``F(x, c_noise, y)``), trained with
``lambda(sigma) ||D(x0 + sigma eps; sigma) - x0||^2`` and ``ln sigma ~ N(P_mean, P_std^2)``.
The preconditioned network predicts x0; sampling runs it on the linear path through
``config.sampler`` (EDM's grid and Heun: ``sampler.grid = "edm"``).
"""

from __future__ import annotations

from flax import nnx

import nnx_objectives as no
from nnx_train import tasks
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.sampler_config import flow_generate

__all__ = ["edm_task"]


def edm_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """`EDMObjective` on `EDMPrecond(network)`."""
    config, section = inputs.config, inputs.config.objective
    objective = no.EDMObjective(
        P_mean=section.P_mean, P_std=section.P_std, sigma_data=section.sigma_data
    )

    def make_edm() -> nnx.Module:
        return no.EDMPrecond(inputs.make_network(), sigma_data=section.sigma_data)

    return tasks.GeneratorTask(
        build_trainable=make_edm,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=flow_generate(
            config, inputs.data_shape, prediction="x0", path="linear", null_label=inputs.null_label
        ),
        num_classes=inputs.num_classes,
    )
