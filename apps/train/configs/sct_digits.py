"""sCT on the embedded digits: continuous-time consistency training from scratch.

Command::

    uv run apps/train --config apps/train/configs/sct_digits.py          # 2-step samples
    uv run apps/train --config apps/train/configs/sct_digits.py:1step    # 1-step evaluation

Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models"
(sCM, arXiv 2410.11081), Algorithm 1 with the digits DiT of configs/digits.py outputting the
TrigFlow ``F`` directly. The second command, run on the same --workdir after the first, finds
the run finished and evaluates its final checkpoint with one step instead of two: the pair of
figures is the proof that 2 steps beat 1 on the classifier-feature Frechet distance. The
recipe card (docs/recipes/sct_digits.md) lists the hyperparameters and their sources.
"""

from nnx_train.defaults import sibling_config
from nnx_train.recipes.consistency import consistency_objective


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "digits")
    config.name = "sct_digits"
    config.objective = consistency_objective("sct")
    config.objective.tangent_warmup_steps = 100
    config.objective.sample_steps = 1 if arg == "1step" else 2
    config.optimizer.learning_rate = 1e-3
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "cosine", "warmup_steps": 50, "decay_steps": 1150, "end_learning_rate": 1e-5}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 128, "num_steps": 1200, "log_every": 50})
    config.checkpoint.update({"every_steps": 600, "keep": 1, "keep_period": 0})
    config.guidance.update({"name": "none", "scale": 1.0})
    return config
