"""Config names -> objects: the entry points the loop and the tests call.

The builders live next to what they build: data sources in `nnx_train.data.from_config`,
networks in `nnx_train.networks`, solvers / grids / guidance in `nnx_train.sampler_config`,
each objective's task in its own module of `nnx_train.recipes`. This module adds the
optimiser and the mesh, and re-exports the rest under one name. Every builder rejects an
unknown name with the list of valid ones (`nnx_train.constructors.unknown_name`).
"""

from __future__ import annotations

import jax
import optax
from ml_collections import ConfigDict

import nnx_sharding as ns
from nnx_train.constructors import dtype_from_name, unknown_name
from nnx_train.data.from_config import build_data_source, check_data_fits_model
from nnx_train.errors import ConfigError
from nnx_train.networks import build_autoencoder, build_model_factory, load_pretrained
from nnx_train.optim import make_optimizer, make_schedule
from nnx_train.recipes import OBJECTIVE_NAMES, build_task
from nnx_train.sampler_config import build_grid, build_guidance, build_solver

__all__ = [
    "OBJECTIVE_NAMES",
    "build_autoencoder",
    "build_data_source",
    "build_grid",
    "build_guidance",
    "build_mesh_and_rules",
    "build_model_factory",
    "build_optimizer",
    "build_solver",
    "build_task",
    "check_data_fits_model",
    "dtype_from_name",
    "load_pretrained",
]

STRATEGIES = {
    "replicate": ns.replicate_rules,
    "fsdp": ns.fsdp_rules,
    "tensor": ns.tensor_rules,
    "fsdp_tensor": ns.fsdp_tensor_rules,
    "sequence": lambda: ns.sequence_rules(ns.fsdp_rules()),
}
STRATEGY_NAMES = tuple(STRATEGIES)


def build_optimizer(config: ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optax transformation, schedule)`` from ``config.optimizer`` and ``config.schedule``."""
    opt = config.optimizer
    if opt.name != "adamw":
        raise unknown_name("optimizer.name", opt.name, ("adamw",))
    sched = config.schedule
    schedule = make_schedule(
        name=sched.name,
        peak_learning_rate=opt.learning_rate,
        warmup_steps=sched.warmup_steps,
        decay_steps=sched.decay_steps,
        end_learning_rate=sched.end_learning_rate,
        warmup_from_zero=sched.warmup_from_zero,
    )
    tx = make_optimizer(
        schedule=schedule,
        b1=opt.b1,
        b2=opt.b2,
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        grad_clip_norm=opt.grad_clip_norm,
    )
    return tx, schedule


def build_mesh_and_rules(sharding: ConfigDict) -> tuple[jax.sharding.Mesh, ns.Rules]:
    """``(mesh, rules)`` of ``config.sharding`` (nnx-sharding), over every device of every
    process.

    Raises:
      ConfigError: the axis sizes do not multiply to the device count (or a -1 cannot be
        filled), in one line that names the sizes and the fix.
    """
    mesh_config = ns.MeshConfig(
        data=sharding.data,
        fsdp=sharding.fsdp,
        sequence=sharding.sequence,
        tensor=sharding.tensor,
    )
    try:
        mesh_config.resolve(jax.device_count())
    except ValueError as error:
        raise ConfigError(
            f"sharding: {error} Set the sizes with --config.sharding.data, .fsdp, .sequence "
            "and .tensor."
        ) from None
    mesh = ns.make_mesh(mesh_config)
    if sharding.strategy not in STRATEGIES:
        raise unknown_name("sharding.strategy", sharding.strategy, STRATEGY_NAMES)
    return mesh, STRATEGIES[sharding.strategy]()
