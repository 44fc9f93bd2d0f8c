"""DMD2 recipe: distil a trained flow-matching teacher into a 1-, 2- or 4-step generator.

Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image Synthesis"
(DMD2, arXiv 2405.14867). Three networks of the teacher's architecture:

- the real score: the teacher, frozen, guided with ``objective.real_guidance_scale``;
- the fake score: initialised from the teacher, trained online with the teacher's own
  flow-matching loss on generator samples (`nnx_objectives.FakeScoreLoss`, DMD Eq. 6);
- the generator: initialised from the teacher, read as a clean-data predictor
  ``G(x_t, t, y) = x_t - t v(x_t, t, y)`` at the times ``uniform_step_times(N)``, trained
  with the distribution-matching loss (`nnx_objectives.DistributionMatchingLoss`) on inputs
  from backward simulation (DMD2 Sec. 4.5) when ``N > 1``.

Two-time-scale update rule (DMD2 Sec. 4.2): every train step updates the fake score; every
``fake_updates_per_generator_update``-th step also updates the generator: its part of the
optimiser is wrapped by `every_k_steps`, which applies the generator's gradient on those
steps only and leaves its Adam moments untouched on the others, and the loss computes the DMD
term (real and fake scores) only on those steps (``batch["step"]``, under ``lax.cond``).

GAN term (DMD2 Sec. 4.3, Eq. 5; on when ``objective.gan_generator_weight > 0``): a
`nnx_objectives.GANHead` (``gan_head``, trained with the fake score) reads the fake score's
last-block tokens at a noised input ``x_t`` (DMD2's ``--diffusion_gan``: ``t`` uniform over the
whole schedule, here ``[0, 1)``). Every step adds ``gan_classifier_weight`` times the
classifier loss on the batch's real images against generator samples (no gradient to the
generator); generator steps add ``gan_generator_weight`` times the non-saturating generator
loss, computed through stop-gradient copies of the fake score and the head, so that only the
generator receives it (as DMD2's code, where the generator turn steps the generator's
optimiser only). Time convention: ``t`` in [0, 1], 0 = data, 1 = noise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

import nnx_objectives as no
import nnx_samplers as sp
from nnx_train import tasks
from nnx_train.errors import ConfigError
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.recipes.teacher import (
    Teacher,
    check_model_is_teachers,
    check_unguided_sampling,
    load_teacher,
    reject_sampler_keys,
)
from nnx_train.state import state_paths

__all__ = [
    "DMD2Modules",
    "TeacherModules",
    "check_generator_section",
    "dmd2_objective",
    "dmd2_task",
    "every_k_steps",
]

GENERATOR_STEPS = (1, 2, 4)
LINEAR = sp.LinearPath()  # the teacher's path (nnx_train.recipes.teacher)


def dmd2_objective() -> ConfigDict:
    """The ``objective`` section of the DMD2 recipe (values: the digits setting)."""
    return ConfigDict(
        {
            "name": "dmd2",
            "teacher_workdir": "",  # a finished run of this app (configs/digits.py)
            "teacher_ema": 0.99,  # which parameters of the teacher (-1: the raw ones)
            "real_guidance_scale": 3.0,  # CFG of the real score
            "generator_steps": 1,  # 1, 2 or 4
            "fake_updates_per_generator_update": 5,  # DMD2 Sec. 4.2
            "t_min": 0.02,  # DMD2: min_step_percent
            "t_max": 0.98,  # DMD2: max_step_percent
            # DMD2 Sec. 4.3 GAN term: --gen_cls_loss_weight and --cls_loss_weight (0: off)
            "gan_generator_weight": 0.0,
            "gan_classifier_weight": 0.0,
            "gan_head_width": 256,  # hidden width of the GANHead MLP
        }
    )


class DMD2Modules(nnx.Module):
    """The trained modules: ``generator`` and ``fake_score`` (both of the teacher's
    architecture) and, with the GAN term, ``gan_head`` (trained with the fake score)."""

    def __init__(
        self,
        generator: nnx.Module,
        fake_score: nnx.Module,
        gan_head: no.GANHead | None = None,
    ) -> None:
        self.generator = generator
        self.fake_score = fake_score
        self.gan_head = gan_head


class TeacherModules(tasks.FrozenModules):
    """The frozen modules of a distillation: the teacher network."""

    def __init__(self, teacher: nnx.Module) -> None:
        super().__init__()
        self.teacher = teacher


class EveryKState(NamedTuple):
    count: jax.Array
    inner: Any


def every_k_steps(inner: optax.GradientTransformation, k: int) -> optax.GradientTransformation:
    """Applies ``inner`` on steps 0, k, 2k, ... and returns zero updates (state kept) otherwise."""

    def init(params):
        return EveryKState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        def apply(_):
            return inner.update(updates, state.inner, params)

        def skip(_):
            return jax.tree.map(jnp.zeros_like, updates), state.inner

        new_updates, inner_state = jax.lax.cond(state.count % k == 0, apply, skip, None)
        return new_updates, EveryKState(state.count + 1, inner_state)

    return optax.GradientTransformation(init, update)


def ttur_optimizer(k: int):
    """``tx -> multi_transform`` with the generator's part stepped every ``k`` steps."""

    def wrap(tx: optax.GradientTransformation) -> optax.GradientTransformation:
        def labels(params):
            paths = state_paths(params)
            names = ["generator" if path[0] == "generator" else "fake_score" for path in paths]
            return jax.tree.unflatten(jax.tree.structure(params), names)

        return optax.multi_transform({"generator": every_k_steps(tx, k), "fake_score": tx}, labels)

    return wrap


def check_generator_section(section: ConfigDict) -> None:
    """The generator keys shared with the Self Forcing recipe: its steps and the TTUR ratio."""
    if section.generator_steps not in GENERATOR_STEPS:
        raise ConfigError(
            f"objective.generator_steps={section.generator_steps}; the generator takes one of "
            f"{GENERATOR_STEPS} steps."
        )
    if section.fake_updates_per_generator_update < 1:
        raise ConfigError("objective.fake_updates_per_generator_update must be >= 1.")


def _check(section: ConfigDict, teacher: Teacher, config: ConfigDict) -> None:
    check_generator_section(section)
    weights = (section.gan_generator_weight, section.gan_classifier_weight)
    if min(weights) < 0 or (min(weights) == 0 < max(weights)):
        raise ConfigError(
            f"objective.gan_generator_weight={weights[0]} and gan_classifier_weight="
            f"{weights[1]}: set both > 0 for DMD2's GAN term (ImageNet: 3e-3 and 1e-2) or "
            "both 0 to turn it off."
        )
    check_model_is_teachers(config.model, teacher)
    check_unguided_sampling(config, "dmd2")


def _stopped(module: nnx.Module) -> nnx.Module:
    """A copy of ``module`` whose parameters pass no gradient."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jax.lax.stop_gradient, state))


def _realism_logits(score: nnx.Module, head: no.GANHead, x: jax.Array, y: jax.Array, key):
    """GAN logits ``(B,)`` of the head on ``score``'s last-block tokens at ``x`` ``(B, H, W, C)``
    noised to ``t ~ U[0, 1)`` on the linear path (DMD2's diffusion GAN)."""
    key_t, key_eps = jax.random.split(key)
    t = jax.random.uniform(key_t, (x.shape[0],), jnp.float32)
    eps = jax.random.normal(key_eps, x.shape, jnp.float32)
    t_x = sp.expand_time(t, x)
    x_t = LINEAR.alpha(t_x) * x + LINEAR.sigma(t_x) * eps
    _, features = score(x_t, t, y, return_features=True)
    return head(list(features.values())[-1])


def _gan_generator_loss(section: ConfigDict, pair: DMD2Modules, x_gen, y, key) -> jax.Array:
    """Weighted non-saturating generator loss ``(B,)``; the fake score and head are frozen."""
    logits = _realism_logits(_stopped(pair.fake_score), _stopped(pair.gan_head), x_gen, y, key)
    return section.gan_generator_weight * no.gan_generator_loss(logits)


def _gan_classifier_loss(section: ConfigDict, pair: DMD2Modules, x_real, x_gen, y, key):
    """Weighted classifier loss ``(B,)``: real images against generator samples (no gradient
    to the generator)."""
    key_real, key_fake = jax.random.split(key)
    x_gen = jax.lax.stop_gradient(x_gen)
    return section.gan_classifier_weight * no.gan_discriminator_loss(
        _realism_logits(pair.fake_score, pair.gan_head, x_real, y, key_real),
        _realism_logits(pair.fake_score, pair.gan_head, x_gen, y, key_fake),
    )


def _loss_fn(section: ConfigDict, data_shape: tuple[int, ...], null_label: int):
    times = sp.uniform_step_times(section.generator_steps)
    ratio = int(section.fake_updates_per_generator_update)
    dmd = no.DistributionMatchingLoss(t_min=section.t_min, t_max=section.t_max)
    fake_loss = no.FakeScoreLoss(no.InterpolantObjective())  # the teacher's own objective

    def loss_fn(pair: DMD2Modules, frozen: TeacherModules, batch: dict, key: jax.Array):
        y = batch["y"]
        key_noise, key_sim, key_dmd, key_fake = jax.random.split(key, 4)
        noise = jax.random.normal(key_noise, (y.shape[0], *data_shape), jnp.float32)
        generator = no.data_predictor(pair.generator)
        x_in, t_in = sp.backward_simulation(
            lambda x, t: generator(x, t, y), noise, times=times, key=key_sim
        )
        x_gen = generator(x_in, t_in, y)
        real = no.data_predictor(
            frozen.teacher, guidance_scale=section.real_guidance_scale, null_label=null_label
        )
        fake = no.data_predictor(pair.fake_score)

        with_gan = pair.gan_head is not None
        key_gen_gan, key_cls = jax.random.split(jax.random.fold_in(key, 1))

        def generator_terms(x):
            loss = dmd(x, y, key_dmd, real=real, fake=fake)[0]
            gan = _gan_generator_loss(section, pair, x, y, key_gen_gan) if with_gan else 0 * loss
            return loss, gan

        zeros = jnp.zeros((y.shape[0],), jnp.float32)
        dmd_loss, gan_loss = jax.lax.cond(
            batch["step"] % ratio == 0, generator_terms, lambda x: (zeros, zeros), x_gen
        )
        score_loss, _ = fake_loss(pair.fake_score, x_gen, y, key_fake)
        # The generator's terms are 0 on fake-only steps: scaled by the ratio, their mean over
        # a logging interval (a multiple of the ratio) is the generator steps' mean.
        aux = {"dmd_loss": dmd_loss * ratio, "fake_score_loss": score_loss}
        total = score_loss + dmd_loss
        if with_gan:
            x_real = tasks.pixels_to_float(batch["x"])
            classifier = _gan_classifier_loss(section, pair, x_real, x_gen, y, key_cls)
            aux.update({"gan_generator_loss": gan_loss * ratio, "gan_classifier_loss": classifier})
            total = total + gan_loss + classifier
        return total, aux

    return loss_fn


def dmd2_task(inputs: RecipeInputs) -> tasks.GeneratorTask:
    """The DMD2 generator task of ``config.objective`` (see the module docstring)."""
    config, section = inputs.config, inputs.config.objective
    reject_sampler_keys(config, "dmd2", reads="objective.generator_steps")  # before any loading
    teacher = load_teacher(section.teacher_workdir, ema=float(section.teacher_ema))
    _check(section, teacher, config)
    times = sp.uniform_step_times(section.generator_steps)

    def trainable() -> DMD2Modules:
        fake_score = teacher.make()
        if section.gan_generator_weight == 0:
            return DMD2Modules(teacher.make(), fake_score)
        width = int(teacher.model.hidden_size)
        head = no.GANHead(width, int(section.gan_head_width), rngs=nnx.Rngs(config.seed + 5))
        return DMD2Modules(teacher.make(), fake_score, head)

    def generate(pair: DMD2Modules, frozen: Any, labels: jax.Array, key: jax.Array):
        del frozen
        key_noise, key_steps = jax.random.split(key)
        labels = jnp.asarray(labels, jnp.int32)
        noise = jax.random.normal(key_noise, (labels.shape[0], *inputs.data_shape), jnp.float32)
        generator = no.data_predictor(pair.generator)
        return sp.consistency_sample(
            lambda x, t: generator(x, t, labels), noise, times=times, key=key_steps
        )

    return tasks.GeneratorTask(
        build_trainable=trainable,
        build_frozen=lambda: TeacherModules(teacher.make()),
        loss_fn=_loss_fn(section, inputs.data_shape, inputs.null_label),
        generate=generate,
        num_classes=inputs.num_classes,
        wrap_optimizer=ttur_optimizer(int(section.fake_updates_per_generator_update)),
        report=teacher_report(teacher, nfe=len(times)),
    )


def teacher_report(teacher: Teacher, *, nfe: int) -> dict:
    """``nfe`` of the student and the teacher's accuracy, Frechet distance and NFE."""
    report: dict = {"nfe": nfe, "teacher_nfe": teacher.nfe}
    report["teacher_guidance_scale"] = teacher.guidance_scale
    for key in ("generated_class_accuracy", "classifier_frechet_distance"):
        if key in teacher.metrics:
            report[f"teacher_{key}"] = teacher.metrics[key]
    return report
