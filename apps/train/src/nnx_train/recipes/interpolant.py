"""SiT's interpolant recipe: flow matching on a path with a chosen prediction and time law.

Ma et al., "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable
Interpolant Transformers" (2024), Sec. 3.
"""

from __future__ import annotations

from ml_collections import ConfigDict

import nnx_objectives as no
from nnx_train import tasks
from nnx_train.constructors import reject_ignored, unknown_name
from nnx_train.errors import ConfigError
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.sampler_config import flow_generate, sampler_path

__all__ = ["build_interpolant", "build_time_distribution", "interpolant_task"]

PREDICTION_NAMES = ("velocity", "noise", "score", "x0")
TIME_NAMES = ("uniform", "logit_normal")


def _prediction(name: str) -> no.Prediction:
    match name:
        case "velocity":
            return no.VelocityPrediction()
        case "noise":
            return no.NoisePrediction()
        case "score":
            return no.ScorePrediction()
        case "x0":
            return no.X0Prediction()
        case _:
            raise unknown_name("objective.prediction", name, PREDICTION_NAMES)


def build_time_distribution(section: ConfigDict, *, time_shift: float) -> no.TimeDistribution:
    """``objective.time_distribution`` (`nnx_train.sections.time_distribution`) followed by the
    shared ``time_shift``."""
    times = section.time_distribution
    match times.name:
        case "uniform":
            where = "objective.time_distribution"
            reject_ignored(where, times, "time_distribution.name='uniform'", mean=0.0, std=1.0)
            law = no.UniformTime()
        case "logit_normal":
            law = no.LogitNormalTime(mean=times.mean, std=times.std)
        case _:
            raise unknown_name("objective.time_distribution.name", times.name, TIME_NAMES)
    if time_shift != 1.0:
        law = no.ShiftedTime(law, time_shift)
    return law


def build_interpolant(section: ConfigDict, *, time_shift: float) -> no.InterpolantObjective:
    """nnx-objectives' `InterpolantObjective` (SiT) of ``config.objective``."""
    return no.InterpolantObjective(
        path=sampler_path(section.path),
        prediction=_prediction(section.prediction),
        time_distribution=build_time_distribution(section, time_shift=time_shift),
    )


def interpolant_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """Interpolant objective with class dropout; samples with ``config.sampler``."""
    config, section = inputs.config, inputs.config.objective
    if config.model.get("learn_sigma", False):
        raise ConfigError(
            "model.learn_sigma=True has no use in the interpolant objective (it trains a "
            "single output); set --config.model.learn_sigma=False."
        )
    objective = no.ClassDropout(
        build_interpolant(section, time_shift=config.time_shift),
        probability=section.class_dropout,
        null_label=inputs.null_label,
    )
    generate = flow_generate(
        config,
        inputs.data_shape,
        prediction=section.prediction,
        path=section.path,
        null_label=inputs.null_label,
    )
    return tasks.GeneratorTask(
        build_trainable=inputs.make_network,
        build_frozen=None,
        loss_fn=tasks.generator_loss(objective),
        generate=generate,
        num_classes=inputs.num_classes,
    )
