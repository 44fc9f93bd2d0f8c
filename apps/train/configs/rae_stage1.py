"""RAE stage 1: train the ViT-XL decoder on frozen DINOv2-B (registers) tokens, noise-augmented.

Command::

    uv run apps/train --config apps/train/configs/rae_stage1.py --workdir runs/rae_stage1 \\
        --config.data.path=/data/imagenet/train \\
        --config.objective.encoder.weights=/weights/dinov2-with-registers-base.safetensors

Paper setup (RAE, Zheng et al. 2025): encoder DINOv2-B with 4 registers at
224 px (bicubic without antialias, ImageNet mean/std), final LayerNorm without affine,
registers and CLS dropped -> 16 x 16 x 768 tokens, frozen; decoder ViT-XL (1152 wide, 28
layers, 16 heads, MLP 4096, patch 16 -> 256 px); noise augmentation tokens + sigma eps with
sigma ~ 0.8 U(0, 1) during training only; 16 epochs, lr 2e-4 with a 1-epoch linear warm-up
from 0, then cosine to 2e-5 at epoch 16 (RAE ``configs/stage1/training/DINOv2-B_decXL.yaml``:
``warmup_epochs: 1``, ``decay_end_epoch: 16``, ``warmup_from_zero: true``), batch 512,
EMA 0.9978. No flips (RAE ``src/train_stage1.py``: resize and random crop, no flip; this
recipe uses the ADM centre crop instead of the random crop). The paper's loss is L1 + LPIPS + a hinge GAN with a frozen DINO-S/8
discriminator (adaptive weight 0.75, GAN from epoch 8); this recipe trains the L1 term only
(LPIPS and DINO-S/8 weights are not available offline; see apps/train/README.md).
The seed codebase had inference only. Pictures show reconstructions of training images.

Reported rFID (ImageNet val 50k, centre crop 256): 0.57 (reproduced 0.54); about 1.8-1.9
against ADM's VIRTUAL batch.
"""

from nnx_train.defaults import (
    base_config,
    dinov2_encoder,
    imagefolder_data,
    make_tiny,
    rae_decoder_objective,
)

STEPS_PER_EPOCH = 1_281_167 // 512


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "rae_stage1"
    config.data = imagefolder_data(resolution=256, num_classes=1000)
    config.model = config.model.__class__(
        {
            "name": "RAEDecoder",
            "hidden_size": 1152,
            "depth": 28,
            "num_heads": 16,
            "intermediate_size": 4096,
            "latent_dim": 768,
            "grid_size": 16,
            "patch_size": 16,
            "dtype": "float32",
            "remat": False,
        }
    )
    config.objective = rae_decoder_objective(
        noise_max=0.8,
        l1_weight=1.0,
        l2_weight=0.0,
        encoder=dinov2_encoder(num_register_tokens=4, final_norm_affine=False, resolution=224),
    )
    config.optimizer.update({"learning_rate": 2e-4, "b1": 0.9, "b2": 0.95})
    config.schedule.update(
        {
            "name": "cosine",
            "warmup_steps": STEPS_PER_EPOCH,
            "decay_steps": 15 * STEPS_PER_EPOCH,
            "end_learning_rate": 2e-5,
        }
    )
    config.ema.decays = (0.9978,)
    config.samples.ema = 0.9978
    config.eval.ema = 0.9978
    config.train.update({"batch_size": 512, "num_steps": 16 * STEPS_PER_EPOCH})
    config.checkpoint.update({"every_steps": 5_000, "keep_period": 0})
    config.samples.every_steps = 5_000
    if arg == "tiny":
        make_tiny(
            config,
            shape=(8, 8, 3),
            hidden_size=32,
            depth=1,
            num_heads=2,
            intermediate_size=64,
            latent_dim=32,
            grid_size=2,
            patch_size=4,
        )
        config.objective.encoder.update(
            {"hidden_size": 32, "depth": 1, "num_heads": 2, "image_size": 28, "resolution": 28}
        )
    return config
