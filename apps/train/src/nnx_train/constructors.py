"""Turning config sections into constructor calls, with one-line errors.

A config section holds a ``name`` plus the keyword arguments of what it builds. The helpers
here list the valid names of a closed set, check keyword arguments against a constructor's
signature, and reject keys that the chosen recipe or component would ignore (a value that is
set but never read is an error, not silence).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = [
    "DTYPE_NAMES",
    "call_checked",
    "dtype_from_name",
    "reject_ignored",
    "section_kwargs",
    "signature_parameters",
    "unknown_name",
]

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def unknown_name(section: str, name: Any, valid: tuple[str, ...]) -> ConfigError:
    """The error for a ``name`` outside ``valid`` (lists the valid names)."""
    return ConfigError(f"Unknown {section}={name!r}; valid names: {', '.join(valid)}.")


def section_kwargs(section: ConfigDict, *, drop: tuple[str, ...] = ("name",)) -> dict:
    """The section's keys minus ``drop``, as a plain dict of keyword arguments."""
    return {k: v for k, v in section.to_dict().items() if k not in drop}


def signature_parameters(cls: Any) -> dict:
    """Keyword parameters of a constructor (classes: of ``__init__``, minus ``self``)."""
    target = cls.__init__ if isinstance(cls, type) else cls
    parameters = dict(inspect.signature(target).parameters)
    parameters.pop("self", None)
    return parameters


def call_checked(cls: Callable, section_name: str, kwargs: dict, **extra: Any) -> Any:
    """Calls a constructor, turning a wrong keyword into a message listing the valid ones."""
    try:
        parameters = signature_parameters(cls)
    except (TypeError, ValueError):
        parameters = {}
    if parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            valid = sorted(k for k in parameters if k not in ("rngs", "self"))
            raise ConfigError(
                f"{section_name}: {getattr(cls, '__name__', cls)} takes no argument(s) {unknown}; "
                f"its arguments are {valid}."
            )
    return cls(**kwargs, **extra)


def dtype_from_name(name: str) -> jnp.dtype:
    """``"bfloat16"`` -> ``jnp.bfloat16`` (parameters stay float32; this is the compute dtype)."""
    if name not in DTYPE_NAMES:
        raise unknown_name("model.dtype", name, DTYPE_NAMES)
    return jnp.dtype(name)


def reject_ignored(section: str, values: Mapping[str, Any], used_by: str, **expected: Any) -> None:
    """Raises a `ConfigError` when a key differs from the only value ``used_by`` honours.

    Args:
      section: the config section's dotted name (``"sampler"``; ``""`` for top-level keys).
      values: the section (or the config, for top-level keys).
      used_by: what ignores the keys, for the message (``"the meanflow recipe"``).
      **expected: key -> the value under which ignoring the key changes nothing.
    """
    for key, value in expected.items():
        actual = values[key]
        if isinstance(value, tuple):
            actual = tuple(actual)
        if actual != value:
            dotted = f"{section}.{key}" if section else key
            raise ConfigError(
                f"{dotted}={actual!r} is ignored by {used_by}; set --config.{dotted}={value!r} "
                "or choose a setting that reads it."
            )
