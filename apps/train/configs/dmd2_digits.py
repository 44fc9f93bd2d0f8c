"""DMD2 on the embedded digits: a one-step generator distilled from the digits default.

Command (after ``uv run apps/train``, which writes the teacher to runs/digits)::

    uv run apps/train --config apps/train/configs/dmd2_digits.py   # writes runs/dmd2_digits/

Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis"
(DMD2, arXiv 2405.14867). The generator and the fake score start as copies of the teacher
(the digits DiT, EMA 0.99); the real score is the teacher with its own CFG scale 3.0. The
recipe card (docs/recipes/dmd2_digits.md) lists every hyperparameter and where it comes from. Evaluation:
the digits classifier (generated-class accuracy and classifier-feature Frechet distance),
printed next to the teacher's figures and NFE. Target: <= 5 minutes on 2 quiet CPU
cores (apps/train/README.md "Distillation results" has the measured figures).
"""

from nnx_train.defaults import base_config, sibling_config
from nnx_train.recipes.dmd2 import dmd2_objective


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "digits")
    config.name = "dmd2_digits"
    config.objective = dmd2_objective()
    config.objective.teacher_workdir = "runs/digits"
    config.objective.generator_steps = 1
    config.objective.fake_updates_per_generator_update = 5
    config.optimizer.learning_rate = 1e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "constant", "warmup_steps": 0, "decay_steps": 0, "end_learning_rate": 0.0}
    )
    config.ema.decays = (0.99,)
    # 100 steps = 20 generator updates: accuracy 0.994 there, 0.990 after 500 (the FD grows
    # with length; apps/train/README.md "Distillation results").
    config.train.update({"batch_size": 128, "num_steps": 100, "log_every": 50})
    config.checkpoint.update({"every_steps": 100, "keep": 1, "keep_period": 0})
    config.guidance.update({"name": "none", "scale": 1.0})
    # Not read: the generator samples in objective.generator_steps (a training setting too).
    config.sampler = base_config().sampler
    return config
