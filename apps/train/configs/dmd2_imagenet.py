"""DMD2 on ImageNet 256 (SD-VAE latents): a one-step generator from a SiT-XL/2 teacher run.

Command (the teacher is a finished run of configs/sit_xl2.py; students copy its model)::

    uv run apps/train --config apps/train/configs/dmd2_imagenet.py --workdir runs/dmd2_in256 \\
        --config.objective.teacher_workdir=runs/sit_xl2 \\
        --config.data.path=/data/imagenet256_sdvae_latents --config.autoencoder.weights=... \\
        --config.sharding.strategy=fsdp --config.sharding.data=1 --config.sharding.fsdp=-1

Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis"
(DMD2, arXiv 2405.14867). The paper's class-conditional ImageNet run distils EDM's
ImageNet-64 pixel model (FID 1.28 one-step with the GAN term, Table 1); this recipe keeps its
optimisation hyperparameters (tianweiy/DMD2 ``experiments/imagenet/
imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch.sh`` and
``main/edm/train_edm.py``) with a SiT-XL/2 (linear path, velocity) teacher, the teacher kind
this app distils, and its GAN term (DMD2 Sec. 4.3: ``--gan_classifier --diffusion_gan
--cls_loss_weight 1e-2 --gen_cls_loss_weight 3e-3`` in that script). See dmd2_imagenet.md for
the card.
"""

from nnx_train.defaults import base_config, sibling_config
from nnx_train.recipes.dmd2 import dmd2_objective


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "sit_xl2")
    config.name = "dmd2_imagenet"
    config.objective = dmd2_objective()
    config.objective.update(
        {
            "teacher_workdir": "",
            "teacher_ema": 0.9999,
            "real_guidance_scale": 1.0,  # the ImageNet script sets no guidance
            "generator_steps": 1,
            "fake_updates_per_generator_update": 5,  # --dfake_gen_update_ratio 5
            "t_min": 0.02,  # --min_step_percent default
            "t_max": 0.98,  # --max_step_percent default
            "gan_generator_weight": 3e-3,  # --gen_cls_loss_weight 3e-3
            "gan_classifier_weight": 1e-2,  # --cls_loss_weight 1e-2
        }
    )
    config.optimizer.update(
        # --generator_lr / --guidance_lr 2e-6; AdamW (0.9, 0.999), weight decay 0.01;
        # --max_grad_norm 10 (train_edm.py defaults)
        {
            "learning_rate": 2e-6,
            "b1": 0.9,
            "b2": 0.999,
            "weight_decay": 0.01,
            "grad_clip_norm": 10.0,
        }
    )
    # constant_with_warmup, --warmup_step 500 (train_edm.py default)
    config.schedule.update(
        {"name": "constant", "warmup_steps": 500, "decay_steps": 0, "end_learning_rate": 0.0}
    )
    config.train.batch_size = 280  # --batch_size 40 x 7 GPUs
    config.train.num_steps = 400_000  # the script runs until stopped (--train_iters 1e7)
    config.guidance.update({"name": "none", "scale": 1.0, "guided_channels": 0})
    # Not read: the generator samples in objective.generator_steps (a training setting too).
    config.sampler = base_config().sampler
    # A one-step student is not guided: report its unguided FID at 10k and 50k samples.
    config.eval.settings = ("cfg1.0/10k", "cfg1.0/50k")
    return config
