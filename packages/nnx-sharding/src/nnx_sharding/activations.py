"""Sharding constraints on activations by logical name, active only inside `activation_sharding`.

A network marks an intermediate tensor with its logical axes, e.g. the token sequence after the
patch embedding with ``("batch", "seq", None)``. Outside a sharding context the call returns its
input unchanged, so the network runs on one device without knowing about meshes; inside
``with activation_sharding(mesh, rules):`` (active while the step is traced by ``jax.jit``) it
becomes ``jax.lax.with_sharding_constraint``. This is how context parallelism splits tokens.

Two kinds of network read the context:

- networks that import this package call `logical_constraint` (an indivisible dimension is a
  `ShardingError` unless the rules say ``indivisible="replicate"``);
- networks that must not depend on it (nnx-nets depends only on jax and flax) read the state
  that both packages share: Flax's logical-axis-rules context (``flax.nnx.logical_axis_rules``)
  and JAX's mesh context (``jax.set_mesh``). `activation_sharding` enters both, with the
  rule table's ``activations`` entries as Flax ``(name, mesh axes)`` pairs; nnx-nets'
  ``constrain_activation`` then constrains the DiT family's tokens, attention and MLP.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from nnx_sharding.rules import Rules
from nnx_sharding.specs import logical_to_spec

__all__ = ["activation_sharding", "logical_constraint"]

_CONTEXT: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "nnx_sharding_activation_context", default=None
)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Makes `logical_constraint` (and networks that read Flax's logical-axis rules) constrain
    activations to ``mesh`` under ``rules``.

    Enters, for its duration, ``jax.set_mesh(mesh)`` and ``flax.nnx.logical_axis_rules`` with
    ``rules.activations`` as ``(name, mesh axes)`` pairs. Enter it around the ``jax.jit`` call
    that traces the step (tracing happens on the first call, or on ``.lower``), not inside a
    traced function (``jax.set_mesh`` refuses that). The rules are not part of ``jax.jit``'s
    cache key: a function already traced under other rules (or outside any context) keeps its
    old constraints, so jit one function per strategy.

    Args:
      mesh: the device mesh.
      rules: the strategy; its ``activations`` table is used.
    """
    pairs = tuple(rules.activations.items())
    token = _CONTEXT.set((mesh, rules))
    try:
        with jax.set_mesh(mesh), nnx.logical_axis_rules(pairs):
            yield
    finally:
        _CONTEXT.reset(token)


def logical_constraint(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Constrains ``x`` to the sharding its logical axes name (a no-op outside a context).

    Args:
      x: an activation, e.g. tokens ``(B, N, D)``.
      logical_axes: one activation name (``"batch"``, ``"seq"``, ``"mlp"``, ``"heads"``) or
        ``None`` per dimension; names absent from the rules are replicated.

    Returns:
      ``x``, constrained when inside `activation_sharding`.

    Raises:
      ShardingError: a dimension does not divide its mesh axes.
    """
    context = _CONTEXT.get()
    if context is None:
        return x
    mesh, rules = context
    spec = logical_to_spec(
        logical_axes,
        x.shape,
        x.dtype,
        mesh=mesh,
        rules=rules,
        table="activations",
        where=f"activation {tuple(logical_axes)}",
    )
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
