"""REPA-XL/2: SiT-XL/2 aligned at block 8 to frozen DINOv2-B patch tokens (lambda 0.5).

Command (pixels in, SD-VAE encoding on the fly; DINOv2 sees the same pixels)::

    uv run apps/train --config apps/train/configs/repa_xl2.py --workdir runs/repa_xl2 \\
        --config.data.path=/data/imagenet/train \\
        --config.autoencoder.weights=/weights/sd-vae-ft-ema.safetensors \\
        --config.objective.encoder.weights=/weights/dinov2-base.safetensors

Paper setup (REPA, Yu et al. 2025): SiT-XL/2 on 32x32x4 SD-VAE latents;
projector Linear-SiLU-Linear-SiLU-Linear (width 2048) on the tokens after block 8 (DiffuseNNX
ships 4); target DINOv2-B patch tokens of the image resized bicubically to 224, no gradient to
the encoder; loss = flow + 0.5 * mean(-cos); linear path, velocity, uniform t, class dropout
0.1; AdamW lr 1e-4, batch 256, EMA 0.9999, grad clip 1.0 (REPA ran fp16; here bfloat16 matmuls
and activations with float32 master weights and dots-saveable remat, ``XL_ONE_GPU_POLICY``,
docs/precision.md; feature normalisation always fp32). The projector is averaged by the EMA like every trained parameter.
Sampling: Euler-Maruyama 250 (w = sigma_t), CFG 1.8 inside the guidance interval [0, 0.7]
(t = 1 noise: the noisiest 30% unguided).

Reported FID-50k: 5.90 at 4M steps without guidance, 1.42 with CFG 1.8 and the interval
(sFID 4.70, IS 305.7, P 0.80, R 0.65; unverified); about 7.9 at 400k (unverified).
DiffuseNNX: 9.82 at 80 epochs (flagged in its README).
"""

from nnx_train.defaults import (
    XL_ONE_GPU_POLICY,
    base_config,
    dinov2_encoder,
    imagefolder_data,
    make_tiny,
    repa_objective,
)


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "repa_xl2"
    config.data = imagefolder_data(resolution=256, num_classes=1000, horizontal_flip=False)
    config.autoencoder.update({"name": "sdvae", "shift": (0.0,), "scale": (0.18215,)})
    config.model.update(
        {
            "name": "DiT",
            "input_size": 32,
            "patch_size": 2,
            "in_channels": 4,
            "hidden_size": 1152,
            "depth": 28,
            "num_heads": 16,
            **XL_ONE_GPU_POLICY,
        }
    )
    config.objective = repa_objective(
        depth=8, coefficient=0.5, projector_width=2048, encoder=dinov2_encoder(resolution=224)
    )
    config.optimizer.update({"learning_rate": 1e-4, "grad_clip_norm": 1.0})
    config.ema.decays = (0.9999,)
    config.train.update({"batch_size": 256, "num_steps": 4_000_000})
    config.sampler.update(
        {
            "solver": "euler_maruyama",
            "num_steps": 250,
            "diffusion": "sigma",
        }
    )
    config.guidance.update({"name": "cfg", "scale": 1.8, "interval": (0.0, 0.7)})
    config.eval.update(
        {
            "name": "fid",
            "every_steps": 25_000,
            "num_samples": 10_000,
            "batch_size": 250,
            "settings": ("cfg1.0/10k", "cfg1.5/10k", "cfg1.0/50k", "cfg1.5/50k", "cfg1.8/50k"),
        }
    )
    if arg == "tiny":
        make_tiny(config, shape=(8, 8, 3), hidden_size=32, depth=1, num_heads=2)
        config.objective.depth = 1
        config.objective.projector_width = 32
        config.objective.encoder.update(
            {"hidden_size": 32, "depth": 1, "num_heads": 2, "image_size": 56, "resolution": 56}
        )
    return config
