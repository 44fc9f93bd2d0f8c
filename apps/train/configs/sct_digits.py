"""sCT on the embedded digits: continuous-time consistency training from scratch.

Command::

    uv run apps/train --config apps/train/configs/sct_digits.py   # writes runs/sct_digits/

Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models"
(sCM, arXiv 2410.11081), Algorithm 1 with the digits DiT of configs/digits.py outputting the
TrigFlow ``F`` directly. Samples take ``sampler.num_steps = 2`` consistency steps; the final
evaluation scores the same checkpoint with 1 and with 2 steps (``eval.sampler_steps``, metrics
``<name>_steps1`` / ``_steps2``): the pair of Frechet distances is the proof that 2 steps beat
1 (apps/train/tests/test_distillation_proofs.py runs it in CI). The recipe card
(docs/recipes/sct_digits.md) lists the hyperparameters and their sources.
"""

from nnx_train.defaults import sibling_config
from nnx_train.recipes.consistency import consistency_objective


def get_config(arg: str | None = None):
    config = sibling_config(__file__, "digits")
    config.name = "sct_digits"
    config.objective = consistency_objective("sct")
    config.objective.tangent_warmup_steps = 100
    config.optimizer.learning_rate = 1e-3
    config.optimizer.grad_clip_norm = 1.0
    config.schedule.update(
        {"name": "cosine", "warmup_steps": 50, "decay_steps": 1150, "end_learning_rate": 1e-5}
    )
    config.ema.decays = (0.99,)
    config.train.update({"batch_size": 128, "num_steps": 1200, "log_every": 50})
    config.checkpoint.update({"every_steps": 600, "keep": 1, "keep_period": 0})
    config.guidance.update({"name": "none", "scale": 1.0})
    # Consistency steps of the sampler (1 or 2); the final evaluation scores both.
    config.sampler.num_steps = 2
    config.eval.sampler_steps = (1, 2)
    return config
