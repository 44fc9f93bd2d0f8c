"""Embedded default: a class-conditional DiT on scikit-learn's 8x8 digits, on 2 CPU cores.

Command (no arguments)::

    uv run apps/train                      # writes runs/digits/{samples.png,loss_curve.png,metrics.json}
    uv run apps/train --config apps/train/configs/digits.py:tiny   # 30 steps: the pipeline only

Setup: the digits ship inside scikit-learn's wheel (no network); 85% of them (1527 images,
stratified) train the model and an independent CNN classifier, 15% (270) are held out. The
model is a small DiT (nnx_nets.DiT) trained with SiT's linear flow-matching objective
(velocity prediction, uniform t, class dropout 0.1) and sampled with Heun and
classifier-free guidance. Evaluation: the classifier's accuracy on generated images for the
requested labels, and the Frechet distance between classifier features of generated and
held-out real images (nnx_fid's Frechet distance). Budget: at most 5 minutes wall on 2 CPU
cores including compilation; README.md reports the measured figures.
"""

from nnx_train.defaults import base_config, digits_data


def get_config(arg: str | None = None):
    config = base_config()
    config.name = "digits"
    config.seed = 0
    config.data = digits_data(holdout_fraction=0.15, split_seed=0)
    config.loader.read_threads = 2
    config.model.update(
        {
            "name": "DiT",
            "input_size": 8,
            "patch_size": 2,
            "in_channels": 1,
            "hidden_size": 64,
            "depth": 4,
            "num_heads": 4,
            "mlp_ratio": 4.0,
            "num_classes": 10,
            # One scanned, rematerialised block: on XLA:CPU this halves the step time of
            # this small DiT (the unrolled backward spends most of its time in large
            # duplicated elementwise fusions) and shortens compilation.
            "scan_blocks": True,
            "remat": "full",
        }
    )
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.0
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "cosine", "warmup_steps": 50, "decay_steps": 1150, "end_learning_rate": 1e-5}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 128, "num_steps": 1200, "log_every": 50})
    config.checkpoint.update({"every_steps": 600, "keep": 2, "keep_period": 0})
    config.sampler.update({"solver": "heun", "num_steps": 10})
    config.guidance.update({"name": "cfg", "scale": 3.0})
    config.samples.update({"every_steps": 0, "num_images": 100, "ema": 0.99})
    config.eval.update(
        {"name": "digits", "every_steps": 0, "num_samples": 500, "batch_size": 100, "ema": 0.99}
    )
    if arg == "tiny":  # the whole pipeline in 30 steps (about a minute); digits not yet legible
        config.name = "digits_tiny"
        config.train.update({"num_steps": 30, "log_every": 10})
        config.schedule.update({"warmup_steps": 5, "decay_steps": 30})
        config.checkpoint.every_steps = 30
        config.sampler.num_steps = 4
        config.samples.num_images = 20
        config.eval.update({"num_samples": 60, "batch_size": 60})
    return config
