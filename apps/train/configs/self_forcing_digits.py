"""Self Forcing on moving digits: a 2-step causal video generator distilled from its teacher.

Command (after ``uv run apps/train --config apps/train/configs/moving_digits.py``, which
writes the teacher to runs/moving_digits)::

    uv run apps/train --config apps/train/configs/self_forcing_digits.py

Huang et al. 2025, "Self Forcing: Bridging the Train-Test Gap in Autoregressive Video
Diffusion" (arXiv 2506.08009): the generator and the fake score start as copies of the
Diffusion Forcing teacher (EMA 0.99); during training the generator makes every 4-frame
clip frame after frame from its own earlier frames, 2 steps per frame, and DMD (Yin et al.
2024) against the teacher with CFG 3.0 trains it on the finished clip. Sampling: 8-frame
rollouts (twice the training clip), 2 network calls per frame and no guidance, against the
teacher's 10 Euler steps with CFG (20 calls per frame). Evaluation: the video digits metrics
of configs/moving_digits.py, with the teacher's next to them. The recipe card
(docs/recipes/self_forcing_digits.md) lists the hyperparameters and their sources.

``:tiny`` shrinks it for the tests (2 steps; give ``objective.teacher_workdir`` a tiny
teacher run).
"""

from nnx_train.defaults import sibling_config
from nnx_train.recipes.self_forcing import self_forcing_objective


def get_config(arg: str | None = None):
    if arg not in (None, "tiny"):
        raise ValueError(f"unknown argument {arg!r} of self_forcing_digits.py; valid: tiny")
    config = sibling_config(__file__, "moving_digits", arg)  # the teacher's model (or :tiny's)
    config.name = "self_forcing_digits"
    config.objective = self_forcing_objective()
    config.objective.teacher_workdir = "runs/moving_digits"
    config.optimizer.learning_rate = 1e-4
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "constant", "warmup_steps": 0, "decay_steps": 0, "end_learning_rate": 0.0}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 32, "num_steps": 300, "log_every": 25})
    config.checkpoint.update({"every_steps": 300, "keep": 1, "keep_period": 0})
    config.sampler.update({"solver": "heun", "num_steps": 32})  # unused: generator_steps
    config.guidance.update({"name": "none", "scale": 1.0})
    if arg == "tiny":
        config.name = "self_forcing_digits_tiny"
        config.train.update({"batch_size": 8, "num_steps": 2, "log_every": 1})
        config.checkpoint.update({"every_steps": 2})
    return config
