"""RAE stage-1 recipe: a ViT decoder on frozen DINOv2 tokens, with noise augmentation.

Zheng et al., "Diffusion Transformers with Representation Autoencoders" (2025), Sec. 3.
Nothing is sampled, so the ``sampler`` and ``guidance`` sections and ``time_shift`` must keep
their defaults.
"""

from __future__ import annotations

from nnx_train import defaults, tasks
from nnx_train.constructors import reject_ignored
from nnx_train.networks import representation_encoder
from nnx_train.recipes.inputs import RecipeInputs

__all__ = ["rae_decoder_task"]

USED_BY = "the rae_decoder recipe (it reconstructs images and samples nothing)"


def rae_decoder_task(inputs: RecipeInputs) -> tasks.AutoencoderTask:
    """`RAEStage1` loss and reconstructions with the frozen encoder of ``objective.encoder``."""
    config, section = inputs.config, inputs.config.objective
    reject_ignored("", config, USED_BY, time_shift=1.0)
    base = defaults.base_config()
    reject_ignored("sampler", config.sampler, USED_BY, **base.sampler.to_dict())
    reject_ignored("guidance", config.guidance, USED_BY, **base.guidance.to_dict())
    encoder_section = section.encoder

    def make_frozen() -> tasks.FrozenModules:
        return tasks.FrozenModules(
            representation=representation_encoder(
                encoder_section, seed=config.seed, section="objective.encoder"
            )
        )

    stage1 = tasks.RAEStage1(
        noise_max=section.noise_max,
        l1_weight=section.l1_weight,
        l2_weight=section.l2_weight,
        encoder_resolution=encoder_section.resolution,
    )
    return tasks.AutoencoderTask(
        build_trainable=inputs.make_network,
        build_frozen=make_frozen,
        loss_fn=stage1.loss,
        reconstruct=stage1.reconstruct,
        num_classes=inputs.num_classes,
    )
