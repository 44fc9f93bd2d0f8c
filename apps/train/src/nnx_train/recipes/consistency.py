"""sCT and sCD recipes: continuous-time consistency models with TrigFlow, 1- or 2-step sampling.

Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models"
(sCM, arXiv 2410.11081), Algorithm 1. The objective is nnx-objectives'
`ConsistencyObjective` (TrigFlow state, JVP through the network, tangent normalisation
``c = 0.1``, tangent warm-up over ``tangent_warmup_steps`` read from ``batch["step"]``) inside
`UncertaintyWeighted` (sCM's adaptive weight ``w_phi(t)``, Eq. 8) on
``WithLogVar(network, LogVarHead)``.

- ``sct``: consistency training from scratch; the network ``config.model`` outputs the
  TrigFlow ``F`` directly.
- ``scd``: distillation from a trained linear-path velocity teacher (``teacher_workdir``,
  a run of this app), read as a TrigFlow model by `nnx_objectives.LinearVelocityAsTrigFlow`;
  the tangent is the teacher's with classifier-free guidance ``guidance_scale``
  (`TeacherTangent`), and the student starts as a copy of the teacher under the same wrapper.

Sampling: `nnx_samplers.consistency_sample` on the TrigFlow path (``GVPPath``,
``noise_scale = sigma_d``) at ``t = 1`` (``sampler.num_steps = 1``) or ``t = (1, mid_t)``
(``sampler.num_steps = 2``; sCM's ``s = 1.1`` is ``mid_t = 0.7003``), unguided;
``eval.sampler_steps = (1, 2)`` evaluates both. The other ``sampler.*`` keys are not read and
must keep their defaults. Time: ``t`` in [0, 1], 0 = data, 1 = noise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

import nnx_objectives as no
import nnx_samplers as sp
from nnx_train import tasks
from nnx_train.errors import ConfigError
from nnx_train.recipes.dmd2 import TeacherModules, teacher_report
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.recipes.teacher import (
    check_model_is_teachers,
    check_unguided_sampling,
    load_teacher,
    reject_sampler_keys,
)

__all__ = ["consistency_objective", "sct_task", "scd_task"]


def consistency_objective(name: str) -> ConfigDict:
    """The ``objective`` section of ``sct`` or ``scd`` (sCM's CIFAR-10 values; see the cards)."""
    section = {
        "name": name,
        "sigma_data": 0.5,  # sCM: sigma_d = 0.5
        "P_mean": -1.0,  # sCM CIFAR-10 proposal
        "P_std": 1.4,
        "normalisation_constant": 0.1,  # sCM: c = 0.1
        "tangent_warmup_steps": 10_000,  # sCM: H = 10k iterations
        "logvar_channels": 128,  # adaptive weight's Fourier features (EDM2 / sCM)
        "mid_t": sp.SCM_TWO_STEP_MID_T,  # sCM's two-step s = 1.1 in our time
    }
    if name == "scd":
        section.update({"teacher_workdir": "", "teacher_ema": 0.99, "guidance_scale": 3.0})
    return ConfigDict(section)


def _objective(section: ConfigDict, tangent: Any) -> no.UncertaintyWeighted:
    return no.UncertaintyWeighted(
        no.ConsistencyObjective(
            tangent=tangent,
            sigma_data=section.sigma_data,
            time_distribution=no.TrigFlowTime(section.P_mean, section.P_std, section.sigma_data),
            normalisation_constant=section.normalisation_constant,
            tangent_warmup_steps=section.tangent_warmup_steps,
        )
    )


def _sample_times(config: ConfigDict, recipe: str) -> tuple[float, ...]:
    """``(1,)`` or ``(1, mid_t)`` for ``sampler.num_steps`` 1 or 2 (and ``eval.sampler_steps``
    must name 1 or 2 only); the other ``sampler.*`` keys must keep their defaults."""
    reject_sampler_keys(config, recipe, reads="sampler.num_steps (1 or 2)", keep=("num_steps",))
    for num_steps in (config.sampler.num_steps, *config.eval.get("sampler_steps", ())):
        if num_steps not in (1, 2):
            raise ConfigError(
                f"sampler.num_steps={num_steps} (or in eval.sampler_steps): the {recipe} "
                "recipe samples in 1 or 2 consistency steps; set 1 or 2."
            )
    if config.sampler.num_steps == 1:
        return (1.0,)
    return (1.0, float(config.objective.mid_t))


def _generate(config: ConfigDict, data_shape: tuple[int, ...], recipe: str):
    section = config.objective
    times = _sample_times(config, recipe)
    sigma_data = float(section.sigma_data)

    def generate(model: Any, frozen: Any, labels: jax.Array, key: jax.Array) -> jax.Array:
        del frozen
        key_noise, key_steps = jax.random.split(key)
        labels = jnp.asarray(labels, jnp.int32)
        noise = jax.random.normal(key_noise, (labels.shape[0], *data_shape), jnp.float32)

        def denoise(x_s, t):
            return no.trigflow_consistency_function(model, x_s, t, labels, sigma_data=sigma_data)

        return sp.consistency_sample(
            denoise, noise, times=times, key=key_steps, path=sp.GVPPath(), noise_scale=sigma_data
        )

    return generate


def _with_head(network: nnx.Module, section: ConfigDict, seed: int) -> no.WithLogVar:
    return no.WithLogVar(network, no.LogVarHead(section.logvar_channels, rngs=nnx.Rngs(seed + 3)))


def _loss(objective: Any, tangent_of: Any):
    def loss_fn(model: nnx.Module, frozen: Any, batch: dict, key: jax.Array):
        x0 = tasks.pixels_to_float(batch["x"])
        return objective(tangent_of(frozen))(model, x0, batch["y"], key, step=batch["step"])

    return loss_fn


def sct_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """sCT from scratch: ``config.model`` is the TrigFlow network ``F``."""
    config, section = inputs.config, inputs.config.objective
    check_unguided_sampling(config, "sct")
    objective = _objective(section, no.ConditionalTangent())
    return tasks.GeneratorTask(
        build_trainable=lambda: _with_head(inputs.make_network(), section, config.seed),
        build_frozen=None,
        loss_fn=_loss(lambda _tangent: objective, lambda frozen: None),
        generate=_generate(config, inputs.data_shape, "sct"),
        num_classes=inputs.num_classes,
        report={"nfe": int(config.sampler.num_steps)},
    )


def scd_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """sCD from a linear-path velocity teacher with CFG; the student starts as the teacher."""
    config, section = inputs.config, inputs.config.objective
    teacher = load_teacher(section.teacher_workdir, ema=float(section.teacher_ema))
    check_model_is_teachers(config.model, teacher)
    check_unguided_sampling(config, "scd")
    sigma_data = float(section.sigma_data)

    def tangent_of(frozen: TeacherModules) -> no.TeacherTangent:
        return no.TeacherTangent(
            no.LinearVelocityAsTrigFlow(frozen.teacher, sigma_data=sigma_data),
            guidance_scale=section.guidance_scale,
            null_label=inputs.null_label,
        )

    def student() -> no.WithLogVar:
        network = no.LinearVelocityAsTrigFlow(teacher.make(), sigma_data=sigma_data)
        return _with_head(network, section, config.seed)

    return tasks.GeneratorTask(
        build_trainable=student,
        build_frozen=lambda: TeacherModules(teacher.make()),
        loss_fn=_loss(lambda tangent: _objective(section, tangent), tangent_of),
        generate=_generate(config, inputs.data_shape, "scd"),
        num_classes=inputs.num_classes,
        report=teacher_report(teacher, nfe=int(config.sampler.num_steps)),
    )
