"""DiT's own recipe: DDPM with a learned variance, trained with improved DDPM's hybrid loss.

Peebles & Xie, "Scalable Diffusion Models with Transformers" (2023), sec. 3.1 and 5: linear
beta schedule 1e-4 to 0.02 over T = 1000 steps, epsilon prediction with the learned
variance (``learn_sigma``) trained with ``L_simple + L_vlb`` (Nichol & Dhariwal 2021, sec.
3.1), sampled with 250 respaced DDPM steps (facebookresearch/DiT ``train.py``,
``sample_ddp.py``). The network is called with its integer step ``k`` (``time_scale = T``).
"""

from __future__ import annotations

import nnx_objectives as no
import nnx_samplers as sp
from nnx_train import tasks
from nnx_train.errors import ConfigError
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.sampler_config import ddpm_generate

__all__ = ["ddpm_task"]


def _check_model(model, num_train_steps: int) -> None:
    if not model.get("learn_sigma", False):
        raise ConfigError(
            "objective.name='ddpm' trains a learned variance: set --config.model.learn_sigma=True "
            "(the network returns 2C channels: noise and variance)."
        )
    if float(model.get("time_scale", 1.0)) != float(num_train_steps):
        raise ConfigError(
            f"objective.name='ddpm' calls the network with k / T (T = {num_train_steps}): set "
            f"--config.model.time_scale={float(num_train_steps)} so that it sees the step k."
        )


def ddpm_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """Improved-DDPM hybrid objective with class dropout; DDPM / DDIM sampling."""
    config, section = inputs.config, inputs.config.objective
    _check_model(config.model, section.num_train_steps)
    schedule = sp.DDPMSchedule(
        num_train_steps=int(section.num_train_steps),
        beta_start=float(section.beta_start),
        beta_end=float(section.beta_end),
    )
    objective = no.ClassDropout(
        no.ImprovedDDPMObjective(schedule, vlb_weight=float(section.vlb_weight)),
        probability=section.class_dropout,
        null_label=inputs.null_label,
    )
    generate = ddpm_generate(
        config, inputs.data_shape, schedule=schedule, null_label=inputs.null_label
    )
    return tasks.GeneratorTask(
        build_trainable=inputs.make_network,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=generate,
        num_classes=inputs.num_classes,
    )
