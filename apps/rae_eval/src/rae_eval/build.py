"""Names in the config become objects here, and only here.

Each config section names what to build (``name``) and otherwise holds exactly that
constructor's keyword arguments, so a misspelt key fails in the constructor. Every ``match``
lists the valid names when it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nnx_nets import DINOv2, DiTDH, RAEDecoder
from nnx_samplers import (
    AutoGuidance,
    ClassifierFreeGuidance,
    ConditionalField,
    Euler,
    GuidanceInterval,
    Heun,
    ShiftedGrid,
    UniformGrid,
)

__all__ = [
    "GUIDANCE_METHODS",
    "build_dit",
    "build_decoder",
    "build_encoder",
    "build_field",
    "build_grid",
    "build_solver",
    "construct",
]

GUIDANCE_METHODS = ("none", "cfg", "autoguidance")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _kwargs(section: Mapping, *, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    kwargs = {k: v for k, v in dict(section).items() if k not in drop}
    if "dtype" in kwargs:
        if kwargs["dtype"] not in _DTYPES:
            raise ValueError(f"unknown dtype {kwargs['dtype']!r}; choose one of {list(_DTYPES)}")
        kwargs["dtype"] = _DTYPES[kwargs["dtype"]]
    return kwargs


def construct(
    factory: Callable[[nnx.Rngs], nnx.Module], *, abstract: bool, seed: int
) -> nnx.Module:
    """Build a module for loading (``abstract``: shapes only, no initialisation) or with random weights.

    An abstract module holds ``ShapeDtypeStruct`` parameters that a checkpoint load replaces;
    building an 839M-parameter DiT-DH-XL this way costs no memory or time.
    """
    if abstract:
        return nnx.eval_shape(lambda: factory(nnx.Rngs(seed)))
    return factory(nnx.Rngs(seed))


def build_encoder(section: Mapping) -> Callable[[nnx.Rngs], nnx.Module]:
    """Factory of the encoder; ``section.input_size`` is read by the autoencoder, not here."""
    kwargs = _kwargs(section, drop=("name", "input_size"))
    match section["name"]:
        case "DINOv2":
            return lambda rngs: DINOv2(**kwargs, rngs=rngs)
        case other:
            raise ValueError(f"unknown encoder {other!r}; valid: 'DINOv2'")


def build_decoder(section: Mapping) -> Callable[[nnx.Rngs], nnx.Module]:
    """Factory of the pixel decoder."""
    kwargs = _kwargs(section)
    match section["name"]:
        case "RAEDecoder":
            return lambda rngs: RAEDecoder(**kwargs, rngs=rngs)
        case other:
            raise ValueError(f"unknown decoder {other!r}; valid: 'RAEDecoder'")


def build_dit(section: Mapping) -> Callable[[nnx.Rngs], nnx.Module]:
    """Factory of a stage-2 network (main model or autoguidance guide)."""
    kwargs = _kwargs(section)
    match section["name"]:
        case "DiTDH":
            return lambda rngs: DiTDH(**kwargs, rngs=rngs)
        case other:
            raise ValueError(f"unknown stage-2 network {other!r}; valid: 'DiTDH'")


def build_solver(section: Mapping):
    """The ODE solver of ``config.sampler`` (the names of apps/train: ``euler``, ``heun``)."""
    match section["solver"]:
        case "euler":
            return Euler()
        case "heun":
            return Heun()
        case other:
            raise ValueError(f"unknown solver {other!r}; valid: 'euler', 'heun'")


def build_grid(section: Mapping, time_shift: float) -> ShiftedGrid:
    """``ShiftedGrid(UniformGrid(num_steps, t_start, t_end), time_shift)``.

    ``time_shift`` is the run's single shift value (``config.time_shift``), the one the
    stage-2 model was trained with (Zheng et al. 2025, RAE).
    """
    base = UniformGrid(
        int(section["num_steps"]), t_start=float(section["t_start"]), t_end=float(section["t_end"])
    )
    return ShiftedGrid(base, float(time_shift))


def build_field(
    section: Mapping,
    *,
    model: Callable,
    guide: Callable | None,
    labels: jax.Array,
    null_label: int,
):
    """The velocity field ``f(x, t)`` of ``config.guidance`` (``{name, scale, interval}``, the
    keys of apps/train's ``config.guidance``).

    ``name``: ``"none"`` (conditional model), ``"cfg"`` (classifier-free guidance with the
    null label ``num_classes``) or ``"autoguidance"`` (the guide network). At ``scale == 1``
    both guidance methods return the conditional field and, as in RAE, skip the second pass.
    """
    method, scale = section["name"], float(section["scale"])
    t_lo, t_hi = section["interval"]
    interval = None if (t_lo, t_hi) == (0.0, 1.0) else GuidanceInterval(float(t_lo), float(t_hi))
    if method not in GUIDANCE_METHODS:
        raise ValueError(f"unknown guidance.name {method!r}; valid: {GUIDANCE_METHODS}")
    if method == "none" or scale == 1.0:
        return ConditionalField(model, labels)
    if method == "cfg":
        return ClassifierFreeGuidance(
            model, labels, null_label=null_label, scale=scale, interval=interval
        )
    if guide is None:
        raise ValueError("guidance.name='autoguidance' needs config.guide and its checkpoint")
    return AutoGuidance(model, guide, labels, scale=scale, interval=interval)
