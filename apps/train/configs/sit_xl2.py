"""SiT-XL/2: DiT-XL/2 on 256-px ImageNet SD-VAE latents, linear path, velocity, uniform t.

Command::

    uv run apps/train --config apps/train/configs/sit_xl2.py --workdir runs/sit_xl2 \\
        --config.data.path=/data/imagenet256_sdvae_latents --config.autoencoder.weights=... \\
        --config.sharding.strategy=fsdp --config.sharding.data=1 --config.sharding.fsdp=-1

Paper setup (SiT, Ma et al. 2024): DiT-XL/2 (1152 wide, 28 blocks, 16 heads, patch 2, 675M
parameters), otherwise as `sit_b2`: AdamW lr 1e-4, betas (0.9, 0.999), batch 256, EMA 0.9999,
no warm-up/clipping/weight decay; 7M steps in the paper (400k = 80 epochs for the
DiffuseNNX comparison). FSDP is the suggested strategy above 8 devices. Precision: bfloat16 matmuls and activations
with float32 master weights and optimiser state, dots-saveable remat over scanned blocks
(``XL_ONE_GPU_POLICY``): batch 256 fits one 141 GB GPU (docs/precision.md); the paper ran fp32.

Reported FID-50k: DiffuseNNX 17.62 at 80 epochs ("Heun-32"); SiT paper 17.2 at 400k
(unverified); at 7M steps 8.3-8.61 with SDE sampling (about 9.5 ODE) and 2.06 with CFG 1.5
(Euler-Maruyama 250, w = sigma_t) guiding latent channels 0-2 only (``guided_channels = 3``,
inherited from `sit_b2`; SiT ``models.py``, ``forward_with_cfg``).
"""

from nnx_train.defaults import XL_ONE_GPU_POLICY, make_tiny, sibling_config


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "sit_b2")
    config.name = "sit_xl2"
    config.model.update({"hidden_size": 1152, "depth": 28, "num_heads": 16, **XL_ONE_GPU_POLICY})
    config.train.num_steps = 7_000_000
    config.sampler.update({"solver": "euler_maruyama", "num_steps": 250, "diffusion": "sigma"})
    config.guidance.scale = 1.5
    if arg == "tiny":
        make_tiny(config, hidden_size=32, depth=1, num_heads=2)
    return config
