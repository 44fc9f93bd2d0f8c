"""MeanFlow-B/2: one-step generation from an average-velocity DiT-B/2, CFG folded into training.

Command::

    uv run apps/train --config apps/train/configs/meanflow_b2.py --workdir runs/meanflow_b2 \\
        --config.data.path=/data/imagenet256_sdvae_latents --config.autoencoder.weights=...

Paper setup (MeanFlow, Geng et al. 2025; willisma/diffuse_nnx): DiT-B/2 with a second
time embedding (t - r), on 32x32x4 SD-VAE latents; (t, r) both logit-normal(-0.4, 1.0), ordered,
r = t for 75% of the rows; target u_tgt = v - (t - r) du/dt by jax.jvp; adaptive weight with
p = 1, c = 0.01 (official; DiffuseNNX uses c = 1.0); training-time CFG omega 0.2, kappa 0.92
inside t in [0, 0.75] (effective scale omega / (1 - kappa) = 2.5), class dropout 0.1; AdamW lr
1e-4, betas (0.9, 0.95), batch 256, EMA 0.9999; 400k steps = 80 epochs (the paper: 240).
Sampling: EulerJump, 1 step (1 NFE), no sampling-time guidance; the evaluation scores 1 and 2
steps (1 and 2 NFE: ``eval.sampler_steps``, metrics ``<name>_steps1`` and ``<name>_steps2``).
The weighted loss sits near 1 by construction (it is not a sign that nothing is learned).

Reported FID-50k (1-NFE): DiffuseNNX 10.24 at 80 epochs (6.61 final); paper 6.17 at 240 epochs.
"""

from nnx_train.defaults import (
    base_config,
    make_tiny,
    meanflow_objective,
    sdvae_latents,
    time_distribution,
)


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "meanflow_b2"
    sdvae_latents(config, resolution=256)
    config.model.update(
        {"name": "MeanFlowDiT", "patch_size": 2, "hidden_size": 768, "depth": 12, "num_heads": 12}
    )
    config.objective = meanflow_objective(
        times=time_distribution("logit_normal", mean=-0.4, std=1.0),
        equal_times_fraction=0.75,
        adaptive_power=1.0,
        adaptive_constant=0.01,
        omega=0.2,
        kappa=0.92,
        guidance_t_min=0.0,
        guidance_t_max=0.75,
        class_dropout=0.1,
    )
    config.optimizer.update({"learning_rate": 1e-4, "b1": 0.9, "b2": 0.95})
    config.ema.decays = (0.9999,)
    config.train.update({"batch_size": 256, "num_steps": 400_000})
    config.sampler.update({"solver": "euler_jump", "num_steps": 1})
    config.guidance.name = "none"
    config.eval.update(
        {
            "name": "fid",
            "every_steps": 25_000,
            "num_samples": 10_000,
            "batch_size": 250,
            "sampler_steps": (1, 2),
            "settings": ("cfg1.0/10k", "cfg1.0/50k"),
        }
    )
    if arg == "tiny":
        make_tiny(config, hidden_size=32, depth=1, num_heads=2)
    return config
