"""Recipes as constructors: one function per ``objective.name`` builds the run's `Task`.

Each module holds one recipe and cites its paper; ``RECIPES`` maps the config name to the
constructor. A recipe reads ``config.objective`` (its own section), ``config.sampler`` and
``config.time_shift``, and raises a `ConfigError` for a key it would ignore.
"""

from __future__ import annotations

from collections.abc import Callable

from ml_collections import ConfigDict

from nnx_train import tasks
from nnx_train.constructors import unknown_name
from nnx_train.errors import ConfigError
from nnx_train.networks import build_model_factory
from nnx_train.recipes.consistency import scd_task, sct_task
from nnx_train.recipes.ddpm import ddpm_task
from nnx_train.recipes.diffusion_forcing import diffusion_forcing_task
from nnx_train.recipes.dmd2 import dmd2_task
from nnx_train.recipes.edm import edm_task
from nnx_train.recipes.edm2 import edm2_task
from nnx_train.recipes.inputs import RecipeInputs
from nnx_train.recipes.interpolant import interpolant_task
from nnx_train.recipes.meanflow import meanflow_task
from nnx_train.recipes.rae_decoder import rae_decoder_task
from nnx_train.recipes.repa import repa_task
from nnx_train.recipes.self_forcing import self_forcing_task

__all__ = ["OBJECTIVE_NAMES", "RECIPES", "RecipeInputs", "build_task"]

RECIPES: dict[str, Callable[[RecipeInputs], tasks.Task]] = {
    "interpolant": interpolant_task,
    "ddpm": ddpm_task,
    "meanflow": meanflow_task,
    "edm": edm_task,
    "edm2": edm2_task,
    "repa": repa_task,
    "rae_decoder": rae_decoder_task,
    "diffusion_forcing": diffusion_forcing_task,
    "dmd2": dmd2_task,
    "sct": sct_task,
    "scd": scd_task,
    "self_forcing": self_forcing_task,
}
OBJECTIVE_NAMES = tuple(RECIPES)


def build_task(config: ConfigDict, *, data_shape: tuple[int, ...]) -> tasks.Task:
    """The `GeneratorTask` or `AutoencoderTask` of ``config.objective``.

    Args:
      config: the run config.
      data_shape: ``(H, W, C)`` (``(F, H, W, C)`` for clips) of one example in model space.
    """
    name = config.objective.name
    if name not in RECIPES:
        raise unknown_name("objective.name", name, OBJECTIVE_NAMES)
    inputs = RecipeInputs(
        config=config,
        data_shape=data_shape,
        make_network=build_model_factory(config.model, seed=config.seed),
        num_classes=int(config.model.get("num_classes", config.data.get("num_classes", 0))),
    )
    try:
        return RECIPES[name](inputs)
    except (KeyError, AttributeError) as err:
        raise ConfigError(
            f"objective {name!r} is missing a config key ({err}); start from a config file whose "
            f"objective section is {name!r} (see apps/train/configs/)."
        ) from err
