"""DiT-XL/2 as DiT trains it: DDPM, epsilon plus learned variance, 256-px ImageNet latents.

Command::

    uv run apps/train --config apps/train/configs/dit_xl2.py --workdir runs/dit_xl2 \\
        --config.data.path=/data/imagenet256_sdvae_latents \\
        --config.autoencoder.weights=/weights/sd-vae-ft-ema.safetensors \\
        --config.eval.inception_weights=/weights/pt_inception-2015-12-05-6726825d.pth \\
        --config.eval.reference_stats=/data/VIRTUAL_imagenet256_labeled.npz \\
        --config.sharding.strategy=fsdp --config.sharding.data=1 --config.sharding.fsdp=-1
    # smoke run on synthetic data with a tiny model:
    uv run apps/train --config apps/train/configs/dit_xl2.py:tiny --workdir /tmp/dit_xl2_tiny

Paper setup (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3-5;
facebookresearch/DiT ``train.py``, ``diffusion/__init__.py``): DiT-XL/2 (1152 wide, 28
blocks, 16 heads, patch 2) on 32x32x4 SD-VAE latents (scale 0.18215); diffusion with
T = 1000, linear betas 1e-4 to 0.02, epsilon prediction with the learned covariance of
improved DDPM (``learn_sigma=True``, hybrid loss ``L_simple + L_vlb``), integer timesteps
(``time_scale=1000``); class dropout 0.1; AdamW lr 1e-4 constant, no weight decay, no
warm-up, no clipping, batch 256, EMA 0.9999; 7M steps for XL/2 (400k in the scaling study);
horizontal flips are DiT's only augmentation. Sampling: 250 respaced DDPM steps
(``sample_ddp.py``), CFG on latent channels 0-2 (``forward_with_cfg``).

Reported FID-50K (DiT paper, Table 4, 256 px): 9.62 without guidance and 2.27 with CFG 1.5
at 7M steps; 19.47 at 400k steps without guidance (Table 4 / Fig. 2 scaling study).
"""

from nnx_train.defaults import base_config, ddpm_objective, make_tiny, sdvae_latents


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "dit_xl2"
    sdvae_latents(config, resolution=256)
    config.model.update(
        {
            "name": "DiT",
            "patch_size": 2,
            "hidden_size": 1152,
            "depth": 28,
            "num_heads": 16,
            "learn_sigma": True,  # eps and the variance values v: 8 output channels
            "time_scale": 1000.0,  # the network sees the integer step k
        }
    )
    config.objective = ddpm_objective(
        num_train_steps=1000, beta_start=1e-4, beta_end=0.02, vlb_weight=1.0, class_dropout=0.1
    )
    config.optimizer.update({"learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "weight_decay": 0.0})
    config.ema.decays = (0.9999,)
    config.train.update({"batch_size": 256, "num_steps": 7_000_000, "log_every": 100})
    config.checkpoint.update({"every_steps": 50_000, "keep": 8, "keep_period": 100_000})
    config.sampler.update({"solver": "ddpm", "grid": "ddpm", "num_steps": 250})
    config.guidance.update({"name": "cfg", "scale": 1.5, "guided_channels": 3})
    config.eval.update(
        {"name": "fid", "every_steps": 50_000, "num_samples": 50_000, "batch_size": 250}
    )
    config.samples.every_steps = 50_000
    if arg == "tiny":
        make_tiny(config, hidden_size=32, depth=1, num_heads=2)
    return config
