"""Forward-mode derivative of a network call, keeping NNX state updates (dropout RNG counts).

MeanFlow and continuous-time consistency models need ``jax.jvp`` of the network with respect
to its inputs. Calling an ``nnx.Module`` inside a raw ``jax.jvp`` fails as soon as the module
writes to its state (e.g. ``nnx.Dropout`` advancing its RNG count: "Cannot mutate RngCount
from a different trace level"). ``network_jvp`` rebuilds the module inside the traced
function, returns its updated non-parameter state as auxiliary output and writes it back, so
the call behaves like an ordinary forward pass (under ``nnx.jit``; a module closed over by a
raw ``jax.jit`` can be used only when the call changes no state, as anywhere in NNX). Plain
callables go straight to ``jax.jvp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx
from jax import Array

__all__ = ["network_jvp"]


def network_jvp(
    model: Callable[..., Array],
    primals: tuple[Array, ...],
    tangents: tuple[Array, ...],
    *trailing_args: Any,
) -> tuple[Array, Array]:
    """``jax.jvp`` of ``model(*primals, *trailing_args)`` with respect to ``primals``.

    Args:
      model: a network (an ``nnx.Module`` or any callable).
      primals: the differentiated inputs, e.g. ``(x_t, r, t)``.
      tangents: one tangent per primal, same shapes and dtypes.
      *trailing_args: inputs held fixed, e.g. the labels ``y``.

    Returns:
      ``(output, tangent_output)``: the network output and its directional derivative.
    """
    if not isinstance(model, nnx.Module):
        return jax.jvp(lambda *p: model(*p, *trailing_args), primals, tangents)

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def call(*p: Array) -> tuple[Array, nnx.State]:
        # Fresh Variables created inside this trace may be mutated here.
        inner = nnx.merge(
            graphdef, jax.tree.map(lambda a: a, params), jax.tree.map(lambda a: a, rest)
        )
        out = inner(*p, *trailing_args)
        return out, nnx.state(inner, nnx.Not(nnx.Param))

    out, tangent_out, new_rest = jax.jvp(call, primals, tangents, has_aux=True)
    # Write back only when the call changed some state (e.g. a dropout RNG count): a module
    # closed over by a raw jax.jit cannot be written to, and needs no write when nothing moved.
    old_leaves, new_leaves = jax.tree.leaves(rest), jax.tree.leaves(new_rest)
    if any(new is not old for old, new in zip(old_leaves, new_leaves, strict=True)):
        nnx.update(model, new_rest)
    return out, tangent_out
