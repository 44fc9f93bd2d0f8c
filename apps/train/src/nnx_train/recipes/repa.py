"""REPA recipe: SiT's interpolant objective plus alignment of a hidden block with DINOv2.

Yu et al., "Representation Alignment for Generation: Training Diffusion Transformers Is
Easier Than You Think" (2025), Eq. 8.
"""

from __future__ import annotations

from flax import nnx

import nnx_objectives as no
from nnx_train import tasks
from nnx_train.networks import latent_encoder, representation_encoder
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.recipes.interpolant import build_interpolant
from nnx_train.sampler_config import flow_generate

__all__ = ["repa_task"]


def repa_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """`ClassDropout(REPA)` with a projector on block ``objective.depth`` and a frozen DINOv2."""
    config, section = inputs.config, inputs.config.objective
    encoder_section = section.encoder
    flow = build_interpolant(section, time_shift=config.time_shift)
    repa = no.ClassDropout(
        tasks.REPAWithFrozenEncoder(
            coefficient=section.coefficient,
            flow=flow,
            encoder_resolution=encoder_section.resolution,
        ),
        probability=section.class_dropout,
        null_label=inputs.null_label,
    )

    def make_repa() -> nnx.Module:
        return no.REPAModel(
            inputs.make_network(),
            depth=section.depth,
            backbone_width=config.model.hidden_size,
            encoder_width=encoder_section.hidden_size,
            projector_width=section.projector_width,
            rngs=nnx.Rngs(config.seed + 5),
        )

    def make_frozen() -> tasks.FrozenModules:
        return tasks.FrozenModules(
            representation=representation_encoder(
                encoder_section, seed=config.seed, section="objective.encoder"
            ),
            latent_encoder=latent_encoder(config),
        )

    return tasks.GeneratorTask(
        build_trainable=make_repa,
        build_frozen=make_frozen,
        loss_fn=tasks.repa_loss(
            repa, scale=config.autoencoder.scale, shift=config.autoencoder.shift
        ),
        generate=flow_generate(
            config,
            inputs.data_shape,
            prediction=section.prediction,
            path=section.path,
            null_label=inputs.null_label,
        ),
        num_classes=inputs.num_classes,
    )
