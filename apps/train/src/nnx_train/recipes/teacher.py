"""A trained run of this app as a distillation teacher (DMD2, sCD).

``objective.teacher_workdir`` names the workdir of a finished run (e.g. the digits default,
``uv run apps/train --workdir runs/digits``). Its ``config.json`` rebuilds the network, the
newest checkpoint gives the parameters (the EMA ``objective.teacher_ema``, or the raw
parameters for ``-1``) and ``metrics.json`` the teacher's own evaluation, which the
distilled run reports next to its own figures.

Supported teachers: the interpolant recipe on the linear path with velocity prediction
(``v = eps - x0``, our time: 0 = data, 1 = noise), the digits default's objective; for the
video distillation (Self Forcing) the Diffusion Forcing recipe (linear path, velocity, one
time per frame).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from nnx_train.constructors import reject_ignored
from nnx_train.defaults import base_config
from nnx_train.ema import ema_name
from nnx_train.errors import ConfigError
from nnx_train.networks import build_model_factory
from nnx_train.state import from_nested

__all__ = [
    "Teacher",
    "check_model_is_teachers",
    "check_unguided_sampling",
    "load_teacher",
    "reject_sampler_keys",
    "solver_nfe",
]

HOW = (
    "pass the workdir of a finished `uv run apps/train` run with --config.objective.teacher_workdir"
)


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A trained velocity network and what its run measured.

    Attributes:
      make: zero-argument constructor of the network filled with the teacher's parameters.
      model: the teacher's ``config.model`` section.
      metrics: the teacher run's ``metrics.json`` (empty if it has none).
      nfe: network evaluations per sample of the teacher's sampler (``None`` if unknown).
      guidance_scale: the teacher run's CFG scale (1 = none).
    """

    make: Callable[[], nnx.Module]
    model: ConfigDict
    metrics: dict
    nfe: int | None
    guidance_scale: float


def solver_nfe(sampler: dict) -> int | None:
    """Evaluations of the field per sample: Euler ``N``, Heun ``2N - 1`` (Euler last step)."""
    match sampler.get("solver"):
        case "euler" | "euler_maruyama":
            return int(sampler["num_steps"])
        case "heun":
            return 2 * int(sampler["num_steps"]) - 1
    return None


def _read_json(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def _check_objective(config: dict, workdir: str, recipes: tuple[str, ...]) -> None:
    objective = config.get("objective", {})
    name = objective.get("name")
    if name in recipes and name == "diffusion_forcing":  # linear path, velocity, per frame
        return
    found = (name, objective.get("path"), objective.get("prediction"))
    if "interpolant" not in recipes or found != ("interpolant", "linear", "velocity"):
        wanted = (
            "the interpolant recipe on the linear path with velocity prediction (as "
            "configs/digits.py)"
            if "interpolant" in recipes
            else f"a run of the {' / '.join(recipes)} recipe"
        )
        raise ConfigError(
            f"objective.teacher_workdir={workdir!r} was trained with objective {found}; a "
            f"teacher must be {wanted}."
        )


def _restore_params(workdir: str, config: dict, ema: float, like: Any) -> Any:
    import orbax.checkpoint as ocp

    directory = config.get("checkpoint", {}).get("directory") or os.path.join(
        workdir, "checkpoints"
    )
    manager = ocp.CheckpointManager(os.path.abspath(directory), item_names=("state",))
    step = manager.latest_step()
    if step is None:
        raise ConfigError(f"objective.teacher_workdir={workdir!r} has no checkpoint; {HOW}.")
    nested = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    state = nested.state
    if ema < 0:
        tree = state["params"]
    elif ema_name(ema) in state.get("ema", {}):
        tree = state["ema"][ema_name(ema)]
    else:
        raise ConfigError(
            f"objective.teacher_ema={ema} is not an EMA of the teacher run (it has "
            f"{sorted(state.get('ema', {}))}); pick one of them or -1 for the raw parameters."
        )
    return from_nested(jax_to_numpy(tree), like)


def jax_to_numpy(tree: Any) -> Any:
    """Host copies (numpy) of a nested dict of arrays."""
    if isinstance(tree, dict):
        return {k: jax_to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)


def load_teacher(
    workdir: str, *, ema: float, recipes: tuple[str, ...] = ("interpolant",)
) -> Teacher:
    """The teacher network of a finished run in ``workdir``.

    Args:
      workdir: the teacher run's workdir (``config.json``, ``checkpoints/``, ``metrics.json``).
      ema: which parameters: an EMA decay of that run, or ``-1`` for the raw parameters.
      recipes: the objectives a teacher may have been trained with ("interpolant": linear
        path, velocity; "diffusion_forcing": the video recipe, linear path, velocity).

    Raises:
      ConfigError: no such run, no checkpoint, another objective, or an unknown EMA.
    """
    config_path = os.path.join(workdir, "config.json")
    if not workdir or not os.path.isfile(config_path):
        raise ConfigError(f"objective.teacher_workdir={workdir!r} has no config.json; {HOW}.")
    config = _read_json(config_path)
    _check_objective(config, workdir, recipes)
    model = ConfigDict(config["model"])
    factory = build_model_factory(model, seed=int(config.get("seed", 0)))
    _, like, _ = nnx.split(nnx.eval_shape(factory), nnx.Param, ...)
    params = _restore_params(workdir, config, ema, like)

    def make() -> nnx.Module:
        module = factory()
        nnx.update(module, params)
        return module

    metrics_path = os.path.join(workdir, "metrics.json")
    metrics = _read_json(metrics_path) if os.path.isfile(metrics_path) else {}
    guidance = config.get("guidance", {})
    scale = float(guidance.get("scale", 1.0)) if guidance.get("name") == "cfg" else 1.0
    return Teacher(
        make=make,
        model=model,
        metrics=metrics,
        nfe=solver_nfe(config.get("sampler", {})),
        guidance_scale=scale,
    )


def check_model_is_teachers(model: ConfigDict, teacher: Teacher) -> None:
    """Raises a `ConfigError` unless ``config.model`` equals the teacher run's model section
    (students start as copies of the teacher, so the two must agree)."""
    mine, theirs = model.to_dict(), teacher.model.to_dict()
    differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differing:
        raise ConfigError(
            f"model differs from the teacher's in {differing}; the student copies the teacher, "
            "so set config.model to the teacher run's model section."
        )


def check_unguided_sampling(config: ConfigDict, recipe: str) -> None:
    """Few-step students sample without guidance (it is distilled in): ``guidance.*`` must
    keep the values that change nothing, or a `ConfigError` names the key."""
    reject_ignored(
        "guidance",
        config.guidance,
        f"the {recipe} recipe (its student samples unguided)",
        name="none",
        scale=1.0,
    )


def reject_sampler_keys(config: ConfigDict, recipe: str, *, reads: str, keep: tuple = ()) -> None:
    """Few-step students sample with their own sampler: a ``sampler.*`` key outside ``keep``
    that differs from the base config's value (and any ``eval.sampler_steps``) would be
    ignored, so a one-line `ConfigError` names it and ``reads``, the key that applies."""
    base = base_config().sampler.to_dict()
    for key in sorted(set(base) - set(keep)):
        if config.sampler[key] != base[key]:
            raise ConfigError(
                f"sampler.{key}={config.sampler[key]!r} is ignored by the {recipe} recipe (its "
                f"few-step sampler reads only {reads}); keep --config.sampler.{key}="
                f"{base[key]!r} and set {reads} instead."
            )
    if tuple(config.eval.get("sampler_steps", ())) and "num_steps" not in keep:
        raise ConfigError(
            f"eval.sampler_steps={tuple(config.eval.sampler_steps)!r} is ignored by the "
            f"{recipe} recipe: its step count is {reads}; set --config.eval.sampler_steps=()."
        )
