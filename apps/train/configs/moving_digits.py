"""Embedded video recipe: Diffusion Forcing on moving digits, on 2 CPU cores.

Command::

    uv run apps/train --config apps/train/configs/moving_digits.py --workdir runs/moving_digits

Setup: clips of 4 frames, 12 x 12 x 1, of one scikit-learn digit bouncing on a grid of 4
pixels (`nnx_train.data.MovingDigitsSource`, ``motion="by_class"``: every digit of a class
follows one diagonal bounce between two corners of the frame, and a clip is 4 frames of it
from a random phase; 8 clips per training digit). Model: a small spatio-temporal DiT
(`nnx_nets.VideoDiT`: factorised space / time attention, causal temporal mask, one time per
frame, patches of 4 pixels so the digit always covers 2 x 2 whole patches, time embedded at
scale 1000 as DiT, scanned and rematerialised blocks). Objective: Diffusion Forcing (Chen et
al. 2024; an independent uniform time per frame, linear path, velocity) with class dropout
0.1. Sampling: 8-frame rollouts, twice the training clip: the first 4 frames together, then
frame after frame with the previous 3 frames as clean context; 10 Euler steps per frame,
CFG 3.0. Evaluation (`nnx_train.video_eval`): per-frame generated-class accuracy with the
digits classifier and a motion-consistency score, within the 4-frame horizon and over the
whole rollout, next to the same measures on real held-out clips. The sample strip (one clip
per row) is ``samples.png``; apps/train/README.md ("Video") has the measured figures and why
the motion is tied to the class.

``:tiny`` shrinks it for the tests (2 steps, synthetic sizes kept).
"""

from nnx_train.defaults import (
    base_config,
    diffusion_forcing_objective,
    moving_digits_data,
)


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "moving_digits"
    config.data = moving_digits_data(
        num_frames=4, frame_size=12, motions_per_digit=8, grid=4, motion="by_class"
    )
    config.loader.read_threads = 2
    config.model = {
        "name": "VideoDiT",
        "input_size": 12,
        "patch_size": 4,
        "in_channels": 1,
        "num_frames": 4,
        "hidden_size": 64,
        "depth": 4,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "num_classes": 10,
        "causal": True,
        "time_scale": 1000.0,
        "spatial_rope": False,
        "dtype": "float32",
        "scan_blocks": True,
        "remat": "full",
    }
    config.objective = diffusion_forcing_objective(
        class_dropout=0.1, rollout_frames=8, pyramid_stride=0
    )
    config.optimizer.learning_rate = 1e-3
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "cosine", "warmup_steps": 50, "decay_steps": 1450, "end_learning_rate": 1e-5}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 64, "num_steps": 1500, "log_every": 50})
    config.checkpoint.update({"every_steps": 750, "keep": 2, "keep_period": 0})
    config.sampler.update({"solver": "euler", "num_steps": 10})
    config.guidance.update({"name": "cfg", "scale": 3.0})
    config.samples.update({"every_steps": 0, "num_images": 10, "ema": 0.99})
    config.eval.update(
        {
            "name": "video_digits",
            "every_steps": 0,
            "num_samples": 200,
            "batch_size": 100,
            "ema": 0.99,
        }
    )
    if arg == "tiny":
        config.name = "moving_digits_tiny"
        config.model.update({"hidden_size": 32, "depth": 1, "num_heads": 2})
        config.train.update({"batch_size": 8, "num_steps": 2, "log_every": 1})
        config.checkpoint.update({"every_steps": 2})
        config.sampler.num_steps = 2
        config.samples.num_images = 2
        config.eval.update({"num_samples": 8, "batch_size": 8})
        config.logging.progress_bar = False
    elif arg is not None:
        raise ValueError(f"unknown argument {arg!r} of moving_digits.py; valid: tiny")
    return config
