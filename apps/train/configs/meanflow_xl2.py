"""MeanFlow-XL/2: as `meanflow_b2` with DiT-XL/2 (1152 wide, 28 blocks, 16 heads).

Command::

    uv run apps/train --config apps/train/configs/meanflow_xl2.py --workdir runs/meanflow_xl2 \\
        --config.data.path=/data/imagenet256_sdvae_latents --config.autoencoder.weights=... \\
        --config.sharding.strategy=fsdp --config.sharding.data=1 --config.sharding.fsdp=-1

Setup: see `meanflow_b2.py` (omega 0.2, kappa 0.92, interval [0, 0.75], 75% r = t,
logit-normal(-0.4, 1), p = 1, c = 0.01, AdamW 1e-4 betas (0.9, 0.95), batch 256, EMA 0.9999,
EulerJump 1 step); the paper trains 240 epochs (1000 for its best 2-NFE number).

Reported FID-50k: paper 3.43 at 240 epochs with 1 NFE, 2.93 with 2 NFE, 2.20 at 1000 epochs
with 2 NFE; DiffuseNNX 5.06 at 80 epochs (3.78 final).
"""

from nnx_train.defaults import make_tiny, sibling_config


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "meanflow_b2")
    config.name = "meanflow_xl2"
    config.model.update({"hidden_size": 1152, "depth": 28, "num_heads": 16})
    config.train.num_steps = 1_200_000
    if arg == "tiny":
        make_tiny(config, hidden_size=32, depth=1, num_heads=2)
    return config
