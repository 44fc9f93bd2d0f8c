"""EDM2-S at 512 px: magnitude-preserving U-Net on 64x64x4 SD-VAE latents, uncertainty-weighted EDM.

Command (latents extracted from [0, 1] pixels, EDM2's convention)::

    python tools/extract_latents.py --source /data/imagenet/train --dest /data/in512_sdvae_edm2 \\
        --resolution 512 --encoder sdvae --weights /weights/sd-vae-ft-mse.safetensors \\
        --input_range zero_one
    uv run apps/train --config apps/train/configs/edm2.py --workdir runs/edm2_s \\
        --config.data.path=/data/in512_sdvae_edm2 --config.autoencoder.weights=...

Paper setup (EDM2, Karras et al. 2024): EDM2-S (model_channels 192,
channel_mult (1, 2, 3, 4), 3 blocks per level, attention at 16 and 8, dropout 0) on 64x64x4
latents standardised with raw_mean (5.81, 3.25, 0.12, -2.15) and raw_std (4.17, 4.62, 3.71,
3.28) to std 0.5; EDM preconditioning (sigma_data 0.5) with ln sigma ~ N(-0.4, 1.0) and the
learned log-variance weighting (EDM2 Eq. 21, 128 Fourier channels); Adam betas (0.9, 0.99),
batch 2048, lr = 0.0100 / sqrt(max(step / 70k, 1)) with a 10M-image ramp-up (NVlabs/edm2
``train_edm2.py``, preset ``edm2-img512-s``: lr 0.0100, decay 70000; 0.0120 is XS's); 2048 Mi
images; NaN/Inf gradients skipped (EDM2 zeroes them). Sampling: EDM grid (sigma 0.002..80,
rho 7), Heun 32 steps (63 NFE), no guidance here.
Post-hoc EMA (EDM2 Sec. 3; NVlabs/edm2 ``training/phema.py``, ``training_loop.py``): two
power-function EMAs, sigma_rel 0.05 and 0.10, snapshotted every 8 Mi images
(``snapshot_nimg=8<<20``); after training ``tools/posthoc_ema.py --sigma_rel 0.130`` rebuilds
the EMA of the FID number below (``edm2-img512-s-2147483-0.130.pkl``; 0.190 for FD-DINOv2),
``--sweep 0.05:0.25:9`` scores a sweep. A standard EMA (0.9999) is kept for the pictures and
the periodic evaluation during training.
Differences: EDM2 trains in fp16 with forced weight normalisation written back to the
weights; this recipe trains in fp32 (see apps/train/README.md).

Reported FID-50k (512 px): EDM2-S 2.56 without guidance (FD-DINOv2 68.64), 2.23 with CFG
from an unconditional XS model, 1.34 with autoguidance (XS guide, w 2.10).
"""

from nnx_train.defaults import base_config, edm2_objective, make_tiny, sdvae_latents

STEPS_PER_MI = 2**20 // 2048


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "edm2"
    sdvae_latents(config, resolution=512, edm2=True)
    config.model = config.model.__class__(
        {
            "name": "EDM2UNet",
            "img_resolution": 64,
            "img_channels": 4,
            "num_classes": 1000,
            "model_channels": 192,
            "channel_mult": (1, 2, 3, 4),
            "num_blocks": 3,
            "attn_resolutions": (16, 8),
            "dropout": 0.0,
            "dtype": "float32",
        }
    )
    config.objective = edm2_objective(P_mean=-0.4, P_std=1.0, sigma_data=0.5, logvar_channels=128)
    config.optimizer.update(
        {"learning_rate": 0.0100, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "weight_decay": 0.0}
    )
    config.schedule.update(
        {
            "name": "inverse_sqrt",
            "warmup_steps": 10_000_000 // 2048,
            "decay_steps": 70_000,
            "end_learning_rate": 0.0,
        }
    )
    config.ema.update(
        {"decays": (0.9999,), "sigma_rels": (0.05, 0.10), "snapshot_every_steps": 8 * STEPS_PER_MI}
    )
    config.train.update({"batch_size": 2048, "num_steps": 2048 * STEPS_PER_MI})
    config.checkpoint.update({"every_steps": 8 * STEPS_PER_MI, "keep_period": 128 * STEPS_PER_MI})
    config.sampler.update({"solver": "heun", "grid": "edm", "num_steps": 32})
    config.guidance.name = "none"
    config.eval.update(
        {
            "name": "fid",
            "every_steps": 64 * STEPS_PER_MI,
            "num_samples": 10_000,
            "settings": ("cfg1.0/10k", "cfg1.0/50k"),
        }
    )
    if arg == "tiny":
        make_tiny(
            config,
            model_channels=16,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(4,),
            channels_per_head=16,
        )
    return config
