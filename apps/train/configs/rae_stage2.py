"""RAE stage 2: DiT-DH-XL on normalised DINOv2-B latents (768 x 16 x 16), shifted logit-normal t.

Command (latents written by ``tools/extract_latents.py --encoder rae --flip``, already
normalised)::

    uv run apps/train --config apps/train/configs/rae_stage2.py --workdir runs/rae_stage2 \\
        --config.data.path=/data/imagenet256_rae_latents \\
        --config.sharding.strategy=fsdp --config.sharding.data=1 --config.sharding.fsdp=-1

Paper setup (RAE, Zheng et al. 2025): DiT-DH-XL (trunk 1152 wide,
28 blocks, 16 heads; head 2048 wide, 2 blocks, 16 heads; patch 1) on 16x16x768 latents of a
frozen DINOv2-B with registers, normalised per element with the published statistics; linear
path, velocity, logit-normal(0, 1) t followed by the resolution shift s = sqrt(196608 / 4096)
= 6.93 (``config.time_shift``: read by training and by the sampling grid), class dropout 0.1;
AdamW lr 2e-4, betas (0.9, 0.95), batch 1024, 2e-4 held constant for 40 epochs (RAE's warm-up
does not start from 0: ``warmup_from_zero: false`` in ``configs/stage2/training/ImageNet256/
DiTDH-XL_DINOv2-B.yaml``) then linear decay to 2e-5 by epoch 800, clip 1.0, EMA 0.9995;
random horizontal flips of the pixels before encoding (RAE ``src/train.py``): here the
latents of flipped images, stored by ``tools/extract_latents.py --flip``, read with
probability 1/2. Euler 50 steps on the shifted grid. Pictures show latent
channels (decoding needs the RAE decoder of apps/rae_eval).

Reported FID-50k: 1.51 without guidance, 1.13 with autoguidance (DiT-DH-S guide, w 1.42) at
about 800 epochs (unverified); 2.16 at 80 epochs.
"""

import math

from nnx_train.defaults import base_config, latent_data, make_tiny, time_distribution

STEPS_PER_EPOCH = 1_281_167 // 1024


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "rae_stage2"
    config.data = latent_data(num_classes=1000, posterior="sample", horizontal_flip=True)
    config.autoencoder.update({"name": "none", "shift": (0.0,), "scale": (1.0,)})
    config.time_shift = math.sqrt(16 * 16 * 768 / 4096)
    config.model = config.model.__class__(
        {
            "name": "DiTDH",
            "input_size": 16,
            "patch_size": 1,
            "in_channels": 768,
            "hidden_size": 1152,
            "depth": 28,
            "num_heads": 16,
            "head_hidden_size": 2048,
            "head_depth": 2,
            "head_num_heads": 16,
            "mlp_ratio": 4.0,
            "num_classes": 1000,
            "time_scale": 1.0,
            "dtype": "float32",
            "remat": "none",
        }
    )
    config.objective.time_distribution = time_distribution("logit_normal", mean=0.0, std=1.0)
    config.optimizer.update(
        {"learning_rate": 2e-4, "b1": 0.9, "b2": 0.95, "weight_decay": 0.0, "grad_clip_norm": 1.0}
    )
    config.schedule.update(
        {
            "name": "linear",
            "warmup_steps": 40 * STEPS_PER_EPOCH,
            "decay_steps": 760 * STEPS_PER_EPOCH,
            "end_learning_rate": 2e-5,
            "warmup_from_zero": False,
        }
    )
    config.ema.decays = (0.9995,)
    config.train.update({"batch_size": 1024, "num_steps": 800 * STEPS_PER_EPOCH})
    config.samples.ema = 0.9995
    config.eval.ema = 0.9995
    config.sampler.update({"solver": "euler", "num_steps": 50})
    config.guidance.name = "none"
    if arg == "tiny":
        make_tiny(
            config,
            shape=(4, 4, 8),
            hidden_size=32,
            depth=1,
            num_heads=2,
            head_hidden_size=48,
            head_depth=1,
            head_num_heads=2,
        )
    return config
