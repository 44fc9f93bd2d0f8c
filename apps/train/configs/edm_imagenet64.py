"""EDM on ImageNet 64x64 pixels: ADM (DhariwalUNet) with EDM preconditioning and loss.

Command (ImageNet train folders, ADM centre crop to 64 px, pixels in [-1, 1])::

    uv run apps/train --config apps/train/configs/edm_imagenet64.py --workdir runs/edm_in64 \\
        --config.data.path=/data/imagenet/train

Paper setup (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Table 7 and Appendix F; NVlabs/edm README, training table, row
``imagenet-64x64-cond-adm``: ``--cond=1 --arch=adm --duration=2500 --batch=4096 --lr=1e-4
--ema=50 --dropout=0.10 --augment=0 --fp16=1``): ADM with model_channels 192,
channel_mult (1, 2, 3, 4), 3 blocks per level, attention at 32, 16 and 8 (64 channels per
head), dropout 0.10, class-conditional (296M parameters); EDM preconditioning with
sigma_data 0.5, ln sigma ~ N(-1.2, 1.2^2); Adam (0.9, 0.999, 1e-8), lr 1e-4 after a linear
ramp-up over 10 Mi images (NVlabs/edm ``training_loop.py``, ``lr_rampup_kimg=10000``), batch
4096 for 2500 Mi images; EMA half-life 50 Mi images, i.e. a per-step decay
0.5 ** (4096 / 50e6) = 0.999943; no augmentation, no x-flips.
Differences: EDM ramps the EMA half-life up over the first 5% of training
(``ema_rampup_ratio=0.05``) and trains in fp16 with loss scaling 100; this recipe keeps a
fixed EMA decay and float32. Sampling here is deterministic Heun on EDM's grid (32 steps,
63 NFE); EDM's 1.36 used its stochastic sampler (256 steps, S_churn 40, S_min 0.05, S_max 50,
S_noise 1.003, 511 NFE), whose churn parameters the app's ``edm_stochastic`` solver does not
take from the config.

Reported FID-50k (ImageNet 64x64, class-conditional): 1.36 (EDM training, stochastic sampler);
the ADM baseline checkpoint re-sampled with EDM's sampler: 1.55 (from 2.07).
"""

from nnx_train.defaults import base_config, edm_objective, imagefolder_data, make_tiny

BATCH = 4096
STEPS_PER_MI = 2**20 // BATCH  # 256 steps per Mi images


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "edm_imagenet64"
    config.data = imagefolder_data(resolution=64, num_classes=1000)
    config.model = config.model.__class__(
        {
            "name": "DhariwalUNet",
            "img_resolution": 64,
            "in_channels": 3,
            "out_channels": 3,
            "num_classes": 1000,
            "model_channels": 192,
            "channel_mult": (1, 2, 3, 4),
            "num_blocks": 3,
            "attn_resolutions": (32, 16, 8),
            "channels_per_head": 64,
            "dropout": 0.10,
            "dtype": "float32",
        }
    )
    config.objective = edm_objective(P_mean=-1.2, P_std=1.2, sigma_data=0.5)
    config.optimizer.update(
        {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    )
    config.schedule.update({"name": "constant", "warmup_steps": 10 * STEPS_PER_MI})
    config.ema.decays = (round(0.5 ** (BATCH / 50e6), 6),)
    config.train.update({"batch_size": BATCH, "num_steps": 2500 * STEPS_PER_MI})
    config.checkpoint.update({"every_steps": 20 * STEPS_PER_MI, "keep_period": 200 * STEPS_PER_MI})
    config.sampler.update({"solver": "heun", "grid": "edm", "num_steps": 32})
    config.guidance.name = "none"
    config.samples.ema = config.ema.decays[0]
    config.eval.update(
        {
            "name": "fid",
            "every_steps": 100 * STEPS_PER_MI,
            "num_samples": 10_000,
            "ema": config.ema.decays[0],
        }
    )
    if arg == "tiny":
        make_tiny(
            config,
            shape=(8, 8, 3),
            out_channels=3,
            model_channels=16,
            channel_mult=(1,),
            num_blocks=1,
            attn_resolutions=(),
            channels_per_head=8,
            dropout=0.0,
        )
    return config
