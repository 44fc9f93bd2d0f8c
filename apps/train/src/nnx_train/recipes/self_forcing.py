"""Self Forcing recipe: a few-step causal video generator trained on its own rollouts.

Huang et al. 2025, "Self Forcing: Bridging the Train-Test Gap in Autoregressive Video
Diffusion" (arXiv 2506.08009). The teacher is a finished Diffusion Forcing run of this app
(configs/moving_digits.py); three networks of its architecture, as in the DMD2 recipe:

- the real score: the teacher, frozen, read with one time for the whole clip and guided
  with ``objective.real_guidance_scale``;
- the fake score: initialised from the teacher, trained online on the generated clips with
  the teacher's own loss (`nnx_objectives.DiffusionForcingObjective`, per-frame times);
- the generator: initialised from the teacher, read as a clean-frame predictor and run
  frame after frame, ``generator_steps`` consistency steps per frame with its own earlier
  frames as clean context (`nnx_objectives.SelfForcingLoss.rollout`: only each frame's last
  call carries the gradient, the context is detached), trained with DMD on the whole clip.

The two-time-scale rule of DMD2 (``fake_updates_per_generator_update``) is the DMD2 recipe's
(`nnx_train.recipes.dmd2.ttur_optimizer`). Sampling rolls out ``objective.rollout_frames``
frames the same way (`nnx_samplers.few_step_rollout`, a window of the training clip length).
Time convention: ``t`` in [0, 1], 0 = data, 1 = noise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

import nnx_objectives as no
import nnx_samplers as sp
from nnx_train import tasks
from nnx_train.constructors import reject_ignored
from nnx_train.errors import ConfigError
from nnx_train.recipes.dmd2 import (
    DMD2Modules,
    TeacherModules,
    check_generator_section,
    ttur_optimizer,
)
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.recipes.teacher import (
    Teacher,
    check_model_is_teachers,
    check_unguided_sampling,
    load_teacher,
)

__all__ = ["self_forcing_objective", "self_forcing_task"]


def self_forcing_objective() -> ConfigDict:
    """The ``objective`` section of the Self Forcing recipe (values: the moving-digits setting)."""
    return ConfigDict(
        {
            "name": "self_forcing",
            "teacher_workdir": "",  # a finished Diffusion Forcing run (configs/moving_digits.py)
            "teacher_ema": 0.99,  # which parameters of the teacher (-1: the raw ones)
            "real_guidance_scale": 3.0,  # CFG of the real score
            "generator_steps": 2,  # consistency steps per frame: 1, 2 or 4
            "fake_updates_per_generator_update": 5,  # DMD2 Sec. 4.2
            "t_min": 0.02,  # DMD2: min_step_percent
            "t_max": 0.98,  # DMD2: max_step_percent
            "rollout_frames": 8,  # frames sampled (the window slides beyond the training clip)
        }
    )


def _check(config: ConfigDict, teacher: Teacher, data_shape: tuple[int, ...]) -> None:
    section = config.objective
    if len(data_shape) != 4:
        raise ConfigError(
            f"the self_forcing recipe trains on clips (F, H, W, C); data.name="
            f"{config.data.name!r} gives examples of shape {data_shape}. Use "
            "data.name='moving_digits' (configs/self_forcing_digits.py)."
        )
    check_generator_section(section)  # steps per frame here
    if section.rollout_frames < data_shape[0]:
        raise ConfigError(
            f"objective.rollout_frames={section.rollout_frames} is shorter than the training "
            f"clip ({data_shape[0]} frames); set it to at least that."
        )
    check_model_is_teachers(config.model, teacher)
    check_unguided_sampling(config, "self_forcing")
    used_by = "the self_forcing recipe (objective.generator_steps sets its sampler)"
    reject_ignored("sampler", config.sampler, used_by, solver="heun", num_steps=32)


def _loss_fn(section: ConfigDict, data_shape: tuple[int, ...], null_label: int):
    ratio = int(section.fake_updates_per_generator_update)
    self_forcing = no.SelfForcingLoss(
        times=sp.uniform_step_times(section.generator_steps),
        dmd=no.DistributionMatchingLoss(t_min=section.t_min, t_max=section.t_max),
    )
    fake_loss = no.FakeScoreLoss(no.DiffusionForcingObjective())  # the teacher's own loss

    def loss_fn(pair: DMD2Modules, frozen: TeacherModules, batch: dict, key: jax.Array):
        y = batch["y"]
        key_noise, key_rollout, key_dmd, key_fake = jax.random.split(key, 4)
        noise = jax.random.normal(key_noise, (y.shape[0], *data_shape), jnp.float32)
        generator = no.data_predictor(pair.generator)
        clip = self_forcing.rollout(lambda x, t: generator(x, t, y), noise, key_rollout)
        real = no.data_predictor(
            frozen.teacher, guidance_scale=section.real_guidance_scale, null_label=null_label
        )
        fake = no.data_predictor(pair.fake_score)

        def matching(clip):
            return self_forcing.matching(clip, y, key_dmd, real=real, fake=fake)[0]

        dmd_loss = jax.lax.cond(
            batch["step"] % ratio == 0,
            matching,
            lambda clip: jnp.zeros((clip.shape[0],), jnp.float32),
            clip,
        )
        score_loss, _ = fake_loss(pair.fake_score, clip, y, key_fake)
        # As in the DMD2 recipe: 0 on fake-only steps, scaled so that its mean over a logging
        # interval (a multiple of the ratio) is the generator steps' mean.
        aux = {"dmd_loss": dmd_loss * ratio, "fake_score_loss": score_loss}
        return score_loss + dmd_loss, aux

    return loss_fn


def _report(teacher: Teacher, nfe: int) -> dict:
    """Per-frame NFE of the student and the teacher's per-frame NFE and accuracies."""
    report: dict = {"nfe_per_frame": nfe, "teacher_nfe_per_frame": teacher.nfe}
    report["teacher_guidance_scale"] = teacher.guidance_scale
    for key in ("frame_accuracy", "rollout_frame_accuracy", "rollout_motion_consistency"):
        if key in teacher.metrics:
            report[f"teacher_{key}"] = teacher.metrics[key]
    return report


def self_forcing_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """The Self Forcing generator task of ``config.objective`` (see the module docstring)."""
    config, section = inputs.config, inputs.config.objective
    teacher = load_teacher(
        section.teacher_workdir, ema=float(section.teacher_ema), recipes=("diffusion_forcing",)
    )
    _check(config, teacher, inputs.data_shape)
    times = sp.uniform_step_times(section.generator_steps)
    window, length = inputs.data_shape[0], int(section.rollout_frames)

    def generate(pair: DMD2Modules, frozen: Any, labels: jax.Array, key: jax.Array):
        del frozen
        key_noise, key_steps = jax.random.split(key)
        labels = jnp.asarray(labels, jnp.int32)
        shape = (labels.shape[0], length, *inputs.data_shape[1:])
        generator = no.data_predictor(pair.generator)
        return sp.few_step_rollout(
            lambda x, t: generator(x, t, labels),
            jax.random.normal(key_noise, shape, jnp.float32),
            window=window,
            times=times,
            key=key_steps,
        )

    return tasks.GeneratorTask(
        build_trainable=lambda: DMD2Modules(teacher.make(), teacher.make()),
        build_frozen=lambda: TeacherModules(teacher.make()),
        loss_fn=_loss_fn(section, inputs.data_shape, inputs.null_label),
        generate=generate,
        num_classes=inputs.num_classes,
        wrap_optimizer=ttur_optimizer(int(section.fake_updates_per_generator_update)),
        report=_report(teacher, len(times)),
    )
