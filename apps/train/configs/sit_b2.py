"""SiT-B/2: DiT-B/2 on 256-px ImageNet SD-VAE latents, linear path, velocity, uniform t.

Command (latents from ``tools/extract_latents.py ... --flip``: flipped copies for the flips)::

    uv run apps/train --config apps/train/configs/sit_b2.py --workdir runs/sit_b2 \\
        --config.data.path=/data/imagenet256_sdvae_latents \\
        --config.autoencoder.weights=/weights/sd-vae-ft-ema.safetensors \\
        --config.eval.inception_weights=/weights/pt_inception-2015-12-05-6726825d.pth \\
        --config.eval.reference_stats=/data/VIRTUAL_imagenet256_labeled.npz
    # smoke run on synthetic data with a tiny model:
    uv run apps/train --config apps/train/configs/sit_b2.py:tiny --workdir /tmp/sit_b2_tiny

Paper setup (SiT, Ma et al. 2024; willisma/diffuse_nnx config): DiT-B/2 (768 wide, 12
blocks, 12 heads, patch 2) on 32x32x4 latents (scale 0.18215), linear path, velocity
prediction, uniform t, class dropout 0.1, random horizontal flips (SiT ``train.py``; here the
latents of flipped images, ``tools/extract_latents.py --flip``); AdamW lr 1e-4, betas (0.9, 0.999), no weight decay,
no warm-up, no clipping, fp32, batch 256, EMA 0.9999; 400k steps = 80 epochs (7M in the
paper's longest runs); checkpoints every 50k (keep 8, keep every 100k); FID-10k every 25k.
Guidance, when a scale above 1 is asked for, touches latent channels 0-2 only, as SiT's
``models.py`` (``forward_with_cfg``: ``model_out[:, :3]``) and its published FIDs do.

Reported FID-50k (no guidance): DiffuseNNX 34.49 at 80 epochs with "Heun-32"; the SiT paper
gives about 33.0-34.5 for SiT-B/2 at 400k (SDE vs ODE sampling matters).
"""

from nnx_train.defaults import base_config, make_tiny, sdvae_latents, time_distribution


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "sit_b2"
    sdvae_latents(config, resolution=256, horizontal_flip=True)
    config.model.update(
        {"name": "DiT", "patch_size": 2, "hidden_size": 768, "depth": 12, "num_heads": 12}
    )
    config.objective.time_distribution = time_distribution("uniform")
    config.optimizer.update({"learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "weight_decay": 0.0})
    config.ema.decays = (0.9999,)
    config.train.update({"batch_size": 256, "num_steps": 400_000, "log_every": 100})
    config.checkpoint.update({"every_steps": 50_000, "keep": 8, "keep_period": 100_000})
    config.sampler.update({"solver": "heun", "num_steps": 32})
    config.guidance.update({"name": "cfg", "scale": 1.0, "guided_channels": 3})
    config.eval.update(
        {
            "name": "fid",
            "every_steps": 25_000,
            "num_samples": 10_000,
            "batch_size": 250,
            "settings": ("cfg1.0/10k", "cfg1.5/10k", "cfg1.0/50k", "cfg1.5/50k"),
        }
    )
    config.samples.every_steps = 25_000
    if arg == "tiny":
        make_tiny(config, hidden_size=32, depth=1, num_heads=2)
    return config
