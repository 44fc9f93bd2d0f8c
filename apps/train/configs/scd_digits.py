"""sCD on the embedded digits: a 2-step consistency student distilled from the digits default.

Command (after ``uv run apps/train``, which writes the teacher to runs/digits)::

    uv run apps/train --config apps/train/configs/scd_digits.py   # writes runs/scd_digits/

Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models"
(sCM, arXiv 2410.11081). The teacher (the digits DiT, linear path, velocity, EMA 0.99) is
read as a TrigFlow model; its tangent is guided with CFG 3.0 (the teacher run's own scale);
the student starts as the teacher and samples in ``sampler.num_steps = 2`` steps (``t = 1``
then sCM's ``s = 1.1``); the final evaluation scores 1 and 2 steps (``eval.sampler_steps``).
The recipe card (docs/recipes/scd_digits.md) lists the hyperparameters and their sources. Target: <= 5 minutes on 2 quiet CPU cores (measured figures:
apps/train/README.md "Distillation results").
"""

from nnx_train.defaults import sibling_config
from nnx_train.recipes.consistency import consistency_objective


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "digits")
    config.name = "scd_digits"
    config.objective = consistency_objective("scd")
    config.objective.teacher_workdir = "runs/digits"
    config.objective.tangent_warmup_steps = 100
    config.optimizer.learning_rate = 1e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "constant", "warmup_steps": 0, "decay_steps": 0, "end_learning_rate": 0.0}
    )
    config.ema.decays = (0.99,)
    # 100 steps (the tangent warm-up's length): 2-step accuracy 0.986 there, 0.958 after 400
    # (apps/train/README.md "Distillation results").
    config.train.update({"batch_size": 128, "num_steps": 100, "log_every": 50})
    config.checkpoint.update({"every_steps": 100, "keep": 1, "keep_period": 0})
    config.guidance.update({"name": "none", "scale": 1.0})
    # Consistency steps of the sampler (1 or 2); the final evaluation scores both.
    config.sampler.num_steps = 2
    config.eval.sampler_steps = (1, 2)
    return config
