"""Sharding hints on activations by logical axis name; a no-op outside a sharding context.

The networks mark their token activations with the logical names of ``CONVENTIONS.md``: the
residual stream ``(B, N, D)`` as ``("batch", "seq", "embed")``, the MLP hidden state as
``("batch", "seq", "mlp")``, queries as ``("batch", "seq", "heads", None)``. Which mesh axis
each name goes to is not the network's business; a sharding library decides.

Mechanism. nnx-nets depends only on jax and flax, and nnx-sharding must not depend on
nnx-nets, so the switch lives in state that both already share:

- Flax's logical-axis-rules context (``flax.nnx.logical_axis_rules``; read here through
  ``flax.linen.get_logical_axis_rules``, the same thread-local) says where each logical
  name goes, as ``(name, mesh axes)`` pairs;
- JAX's mesh context (``jax.set_mesh``) says which mesh.

`constrain_activation` applies ``jax.lax.with_sharding_constraint`` only when both are set,
and returns its input unchanged otherwise, so a network runs on one device without knowing
about meshes.
``nnx_sharding.activation_sharding(mesh, rules)`` enters both contexts with the ``activations``
table of a rule set; plain Flax code gets the same effect with
``with jax.set_mesh(mesh), nnx.logical_axis_rules(pairs):``. This is the idiom Flax documents
for logical axis annotations, so no new global state is introduced. (A context variable of
nnx-nets' own would need nnx-sharding to import nnx-nets; one of nnx-sharding's own would
need the reverse.)

A hint never changes values, so a dimension that its mesh axes do not divide (for example
the ``1 + N`` tokens of a ViT with a CLS token under sequence sharding, or a sampling batch
smaller than the data axes) is left replicated instead of raising; mesh axes that the mesh
lacks are ignored. When a name appears in several pairs the first one wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax.linen import get_logical_axis_rules
from jax.sharding import PartitionSpec

__all__ = ["TOKEN_AXES", "constrain_activation", "constrain_tokens"]

TOKEN_AXES: tuple[str, str, str] = ("batch", "seq", "embed")
"""Logical axes of a token sequence ``(B, N, D)`` (the residual stream of a transformer)."""


def _mesh_axes(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    return tuple(entry)


def constrain_activation(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Constrains ``x`` to the sharding its logical axes name (identity outside a context).

    Args:
      x: an activation, e.g. tokens ``(B, N, D)``.
      logical_axes: one logical name (``"batch"``, ``"seq"``, ``"embed"``, ``"mlp"``,
        ``"heads"``) or ``None`` per dimension of ``x``; a name without a rule, ``None``, or
        a dimension its mesh axes do not divide is replicated.

    Returns:
      ``x``, with a sharding constraint when both a mesh (``jax.set_mesh``) and logical-axis
      rules (``flax.nnx.logical_axis_rules``) are in context.
    """
    if len(logical_axes) != x.ndim:
        raise ValueError(
            f"logical_axes {tuple(logical_axes)} name {len(logical_axes)} dimensions but the "
            f"array has shape {x.shape}; give one name (or None) per dimension"
        )
    rules = get_logical_axis_rules()
    if not rules:
        return x
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    table: dict[str, tuple[str, ...]] = {}
    for name, entry in rules:
        table.setdefault(name, _mesh_axes(entry))
    sizes = dict(mesh.shape)
    used: set[str] = set()
    spec = []
    for size, name in zip(x.shape, logical_axes):
        axes = tuple(a for a in table.get(name, ()) if a in sizes and a not in used)
        if size % math.prod(sizes[a] for a in axes):
            axes = ()
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else (axes or None))
    return jax.lax.with_sharding_constraint(x, PartitionSpec(*spec))


def constrain_tokens(x: jax.Array) -> jax.Array:
    """Constrains a token sequence ``(B, N, D)`` to `TOKEN_AXES` (identity outside a context)."""
    return constrain_activation(x, TOKEN_AXES)
