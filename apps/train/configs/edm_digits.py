"""EDM on scikit-learn's 8x8 digits: a small DDPM++ (SongUNet) with EDM preconditioning, 2 CPU cores.

Command::

    uv run apps/train --config apps/train/configs/edm_digits.py --workdir runs/edm_digits

Setup: the embedded digits of ``configs/digits.py`` (85% train, 15% held out, pixels in
[-1, 1]), a class-conditional DDPM++-style ``SongUNet`` (positional embedding, box
resampling, one attention layer at 4x4; 32 base channels, two levels, one block each) trained
with EDM's preconditioning and loss (Karras et al. 2022, Table 1: sigma_data 0.5,
ln sigma ~ N(-1.2, 1.2^2)), sampled with Heun on EDM's grid (10 steps), no guidance. Evaluation:
the digits classifier's accuracy on generated images and the Frechet distance of its features
(an FID on the classifier's features, as ``configs/digits.py``; not an Inception FID-50k).
"""

from nnx_train.defaults import base_config, digits_data, edm_objective, make_tiny


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "edm_digits"
    config.seed = 0
    config.data = digits_data(holdout_fraction=0.15, split_seed=0)
    config.loader.read_threads = 2
    config.model = config.model.__class__(
        {
            "name": "SongUNet",
            "img_resolution": 8,
            "in_channels": 1,
            "out_channels": 1,
            "num_classes": 10,
            "model_channels": 32,
            "channel_mult": (1, 2),
            "num_blocks": 1,
            "attn_resolutions": (4,),
            "dropout": 0.0,
            "dtype": "float32",
        }
    )
    config.objective = edm_objective(P_mean=-1.2, P_std=1.2, sigma_data=0.5)
    config.optimizer.update({"learning_rate": 1e-3, "grad_clip_norm": 1.0})
    config.schedule.update(
        {"name": "cosine", "warmup_steps": 50, "decay_steps": 1150, "end_learning_rate": 1e-5}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 128, "num_steps": 1200, "log_every": 50})
    config.checkpoint.update({"every_steps": 600, "keep": 2, "keep_period": 0})
    config.sampler.update({"solver": "heun", "grid": "edm", "num_steps": 10})
    config.guidance.name = "none"
    config.samples.update({"every_steps": 0, "num_images": 100, "ema": 0.99})
    config.eval.update(
        {"name": "digits", "every_steps": 0, "num_samples": 500, "batch_size": 100, "ema": 0.99}
    )
    if arg == "tiny":
        make_tiny(
            config,
            shape=(8, 8, 1),
            out_channels=1,
            model_channels=16,
            channel_mult=(1,),
            num_blocks=1,
            attn_resolutions=(),
        )
    return config
