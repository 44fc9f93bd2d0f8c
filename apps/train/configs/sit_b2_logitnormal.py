"""SiT-B/2 with logit-normal(0, 1) time sampling (SD3's t law), otherwise `sit_b2`.

Command::

    uv run apps/train --config apps/train/configs/sit_b2_logitnormal.py --workdir runs/sit_b2_ln \\
        --config.data.path=/data/imagenet256_sdvae_latents --config.autoencoder.weights=...

Setup: as `sit_b2.py` (DiT-B/2, linear path, velocity, AdamW 1e-4, batch 256, EMA 0.9999,
400k steps = 80 epochs, Heun-32 sampling) but ``t = sigmoid(n)``, ``n ~ N(0, 1)`` (Esser et
al. 2024, Eq. 19).

Reported FID-50k (no guidance): DiffuseNNX 29.35 at 80 epochs ("Heun-32"); no paper number.
"""

from nnx_train.defaults import sibling_config, time_distribution


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "sit_b2", arg)
    config.name = "sit_b2_logitnormal" + ("_tiny" if arg == "tiny" else "")
    config.objective.time_distribution = time_distribution("logit_normal", mean=0.0, std=1.0)
    return config
