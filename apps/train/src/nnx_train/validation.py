"""Range checks of every numeric config value, run before anything is built or written.

A value of the right type but out of range (``train.num_steps=-5``, ``model.num_heads=3``
for a width of 32, ``optimizer.learning_rate=nan``) would otherwise end in a traceback deep
in a constructor, in a run that "succeeds" without training, or only after training has
finished (``eval.num_samples=0``). `validate_config` raises one `ConfigError` line naming
the key, its value, the allowed range and the flag that sets it. Keys a recipe does not have
(another network's arguments) are skipped; the mesh is checked against the devices here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = ["RANGES", "validate_config"]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int_at_least(low: int) -> tuple[Callable[[Any], bool], str]:
    return (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
        f"an integer >= {low}",
    )


_POSITIVE = (lambda v: _finite(v) and v > 0, "a finite number > 0")
_NON_NEGATIVE = (lambda v: _finite(v) and v >= 0, "a finite number >= 0")
_FRACTION_OPEN = (lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)")
_PROBABILITY = (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]")
_DECAY = (lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)")

# key -> (check, requirement). Keys absent from a recipe's config are skipped.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _int_at_least(0),
    "time_shift": _POSITIVE,
    "train.num_steps": _int_at_least(1),
    "train.batch_size": _int_at_least(1),
    "train.log_every": _int_at_least(1),
    "train.max_nonfinite_steps": _int_at_least(0),
    "checkpoint.every_steps": _int_at_least(0),
    "checkpoint.keep_period": _int_at_least(0),
    "samples.num_images": _int_at_least(0),
    "samples.every_steps": _int_at_least(0),
    "eval.every_steps": _int_at_least(0),
    "eval.batch_size": _int_at_least(1),
    "schedule.warmup_steps": _int_at_least(0),
    "schedule.decay_steps": _int_at_least(0),
    "schedule.end_learning_rate": _NON_NEGATIVE,
    "optimizer.learning_rate": _POSITIVE,
    "optimizer.b1": _DECAY,
    "optimizer.b2": _DECAY,
    "optimizer.eps": _POSITIVE,
    "optimizer.weight_decay": _NON_NEGATIVE,
    "optimizer.grad_clip_norm": _NON_NEGATIVE,
    "model.patch_size": _int_at_least(1),
    "model.hidden_size": _int_at_least(1),
    "model.depth": _int_at_least(1),
    "model.num_heads": _int_at_least(1),
    "model.mlp_ratio": _POSITIVE,
    "model.input_size": _int_at_least(1),
    "model.in_channels": _int_at_least(1),
    "model.num_classes": _int_at_least(1),
    "sampler.num_steps": _int_at_least(1),
    "sampler.t_start": (lambda v: _finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    "objective.class_dropout": _PROBABILITY,
    "objective.time_std": _POSITIVE,
    "data.holdout_fraction": _FRACTION_OPEN,
    "data.num_examples": _int_at_least(1),
    "data.num_classes": _int_at_least(1),
    "loader.read_threads": _int_at_least(0),
    "loader.prefetch_batches": _int_at_least(0),
    "distributed.initialization_timeout_s": _POSITIVE,
}


def _lookup(config: ConfigDict, key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, ConfigDict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _out_of_range(key: str, value: Any, requirement: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is out of range; set --config.{key} to {requirement}.")


def _check_ranges(config: ConfigDict) -> None:
    for key, (check, requirement) in RANGES.items():
        present, value = _lookup(config, key)
        if present and not check(value):
            raise _out_of_range(key, value, requirement)
    for decay in config.ema.decays:
        if not _DECAY[0](decay):
            raise _out_of_range("ema.decays", tuple(config.ema.decays), "numbers in [0, 1)")


def _check_relations(config: ConfigDict) -> None:
    model = config.model
    if "hidden_size" in model and "num_heads" in model and model.hidden_size % model.num_heads:
        raise ConfigError(
            f"model.num_heads={model.num_heads} does not divide model.hidden_size="
            f"{model.hidden_size}; choose a number of heads that divides the width (e.g. "
            f"{_largest_divisor(model.hidden_size, model.num_heads)})."
        )
    if config.eval.name != "none" and not (
        isinstance(config.eval.num_samples, int) and config.eval.num_samples >= 1
    ):
        raise _out_of_range(
            "eval.num_samples",
            config.eval.num_samples,
            f"an integer >= 1 when eval.name={config.eval.name!r} (or set eval.name='none')",
        )
    interval = tuple(config.guidance.interval)
    if (
        len(interval) != 2
        or not all(_finite(t) for t in interval)
        or not (0 <= interval[0] <= interval[1] <= 1)
    ):
        raise _out_of_range("guidance.interval", interval, "(low, high) with 0 <= low <= high <= 1")
    if not _finite(config.guidance.scale):
        raise _out_of_range("guidance.scale", config.guidance.scale, "a finite number")


def _largest_divisor(width: int, wanted: int) -> int:
    return max(d for d in range(1, max(wanted, 1) + 1) if width % d == 0)


def validate_config(config: ConfigDict, *, check_mesh: bool = True) -> None:
    """Raises a one-line `ConfigError` for the first out-of-range value of ``config``.

    Args:
      config: the resolved config.
      check_mesh: also check the ``sharding`` sizes against ``jax.device_count()`` (after
        ``jax.distributed`` has joined the processes).
    """
    _check_ranges(config)
    _check_relations(config)
    if check_mesh:
        from nnx_train.build import build_mesh_and_rules

        build_mesh_and_rules(config.sharding)
