"""From an NNX state (abstract or concrete) to PartitionSpecs and NamedShardings.

Each ``nnx.Variable`` may carry metadata ``logical_axes``: one logical name (or ``None``) per
dimension. A `Rules` table turns the names into a ``PartitionSpec``; variables without the
metadata (RNG keys, step counters, fixed tables) are replicated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nnx_sharding.rules import MeshAxes, Rules, axes_tuple

__all__ = [
    "ShardingError",
    "abstract_with_shardings",
    "logical_to_spec",
    "named_shardings",
    "partition_specs",
]


class ShardingError(ValueError):
    """A tensor cannot be laid out on the mesh as the rules ask."""


def _nbytes(shape: Sequence[int], dtype: Any) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def logical_to_spec(
    logical_axes: Sequence[str | None],
    shape: Sequence[int],
    dtype: Any,
    *,
    mesh: Mesh,
    rules: Rules,
    table: str = "params",
    where: str = "tensor",
) -> PartitionSpec:
    """Maps one tensor's logical axes to a ``PartitionSpec`` on ``mesh``.

    A mesh axis is used at most once per tensor: when two dimensions ask for the same mesh
    axis (e.g. ``("embed", "embed")`` under FSDP) the first dimension gets it and the later
    one is left unsharded. A fully replicated tensor gets ``PartitionSpec()``.

    Args:
      logical_axes: one logical name or ``None`` per dimension.
      shape: the tensor's shape.
      dtype: its dtype (for the ``rules.min_shard_bytes`` threshold).
      mesh: the device mesh; must define every mesh axis the rules use.
      rules: the strategy.
      table: ``"params"`` (parameters, strict names) or ``"activations"`` (unknown names are
        replicated).
      where: name of the tensor for error messages, e.g. its path in the state.

    Returns:
      The ``PartitionSpec``: one entry per dimension, or ``PartitionSpec()`` if replicated.

    Raises:
      ShardingError: rank mismatch, unknown logical name (params), mesh axis missing from the
        mesh, or a dimension that does not divide its mesh axes (unless
        ``rules.indivisible == "replicate"``).
    """
    logical_axes = tuple(logical_axes)
    shape = tuple(int(size) for size in shape)
    if len(logical_axes) != len(shape):
        raise ShardingError(
            f"{where}: logical_axes {logical_axes} name {len(logical_axes)} dimensions but the "
            f"tensor has shape {shape}. Give one name (or None) per dimension in the "
            "parameter's `logical_axes` metadata."
        )
    mapping = rules.params if table == "params" else rules.activations
    if table == "params":
        _check_param_names(logical_axes, mapping, rules, where)
        if _nbytes(shape, dtype) < rules.min_shard_bytes:
            return PartitionSpec()
    used: set[str] = set()
    entries: list[MeshAxes] = []
    for dim, (name, size) in enumerate(zip(logical_axes, shape)):
        axes = _dimension_axes(dim, name, size, shape, mapping, used, mesh, rules, where)
        used.update(axes)
        entries.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    if all(entry is None for entry in entries):
        return PartitionSpec()
    return PartitionSpec(*entries)


def _check_param_names(
    logical_axes: tuple[str | None, ...], mapping: Any, rules: Rules, where: str
) -> None:
    """Parameter names are checked before the size threshold so that a typo never hides."""
    for dim, name in enumerate(logical_axes):
        if name is not None and name not in mapping:
            raise ShardingError(
                f"{where}: logical axis {name!r} (dimension {dim}) is not in the "
                f"{rules.name!r} rules, which know {sorted(mapping)}. Fix the name in the "
                f"model, or extend the rules: rules.with_params({name}=None)."
            )


def _dimension_axes(
    dim: int,
    name: str | None,
    size: int,
    shape: tuple[int, ...],
    mapping: Any,
    used: set[str],
    mesh: Mesh,
    rules: Rules,
    where: str,
) -> tuple[str, ...]:
    """The mesh axes that shard dimension ``dim`` (empty: unsharded); axes in ``used`` are
    already taken by an earlier dimension of the same tensor."""
    if name is None or name not in mapping:
        return ()
    axes = tuple(axis for axis in axes_tuple(mapping[name]) if axis not in used)
    missing = [axis for axis in axes if axis not in mesh.shape]
    if missing:
        raise ShardingError(
            f"{where}: rules {rules.name!r} send {name!r} to mesh axes {missing}, which "
            f"the mesh {dict(mesh.shape)} does not have. Build the mesh with "
            "nnx_sharding.make_mesh, which defines all of data, fsdp, sequence, tensor."
        )
    num_shards = math.prod(mesh.shape[axis] for axis in axes)
    if size % num_shards == 0:
        return axes
    if rules.indivisible == "replicate":
        return ()
    raise ShardingError(
        f"{where}: dimension {dim} ({name!r}, size {size}) of shape {shape} does not "
        f"divide the {num_shards} shards of mesh axes {axes} "
        f"({ {axis: mesh.shape[axis] for axis in axes} }) under rules {rules.name!r}. "
        "Change the mesh sizes or this dimension (model width, batch, tokens) so "
        "that it divides, or use "
        "dataclasses.replace(rules, indivisible='replicate') to leave such "
        "dimensions unsharded."
    )


def _variable_spec(path: Any, variable: nnx.Variable, mesh: Mesh, rules: Rules) -> PartitionSpec:
    value = variable.get_value()
    logical_axes = variable.get_metadata("logical_axes", None)
    if logical_axes is None or not hasattr(value, "shape"):
        return PartitionSpec()
    return logical_to_spec(
        logical_axes,
        value.shape,
        value.dtype,
        mesh=mesh,
        rules=rules,
        where=jax.tree_util.keystr(path, simple=True, separator="."),
    )


def _map_variables(tree: Any, mesh: Mesh, rules: Rules, leaf_fn: Any) -> Any:
    def visit(path: Any, node: Any) -> Any:
        if isinstance(node, nnx.Variable):
            spec = _variable_spec(path, node, mesh, rules)
            return node.replace(leaf_fn(spec, node.get_value()))
        if hasattr(node, "shape"):
            return leaf_fn(PartitionSpec(), node)
        return None

    return jax.tree_util.tree_map_with_path(
        visit, tree, is_leaf=lambda node: isinstance(node, nnx.Variable)
    )


def partition_specs(tree: Any, *, mesh: Mesh, rules: Rules) -> Any:
    """``PartitionSpec`` for every array of an NNX state, read from ``logical_axes`` metadata.

    Args:
      tree: an ``nnx.State`` (from ``nnx.state`` / ``nnx.split``, concrete or from
        ``nnx.eval_shape``), or any pytree of Variables and arrays.
      mesh: the device mesh (sizes are needed for the divisibility check).
      rules: the strategy.

    Returns:
      The same tree with each Variable's value replaced by its ``PartitionSpec`` and each bare
      array by ``PartitionSpec()``.
    """
    return _map_variables(tree, mesh, rules, lambda spec, _: spec)


def named_shardings(tree: Any, *, mesh: Mesh, rules: Rules) -> Any:
    """Like `partition_specs` but with ``NamedSharding(mesh, spec)`` leaves.

    The result can be passed as ``in_shardings`` / ``out_shardings`` of ``jax.jit`` for
    functions that take or return this state.
    """
    return _map_variables(tree, mesh, rules, lambda spec, _: NamedSharding(mesh, spec))


def abstract_with_shardings(tree: Any, *, mesh: Mesh, rules: Rules) -> Any:
    """``jax.ShapeDtypeStruct`` leaves carrying their ``NamedSharding``: a restore target.

    Args:
      tree: an NNX state, abstract (``nnx.eval_shape``) or concrete.
      mesh: the mesh the arrays should live on.
      rules: the strategy.

    Returns:
      The same tree whose Variables hold ``ShapeDtypeStruct(shape, dtype, sharding=...)``.
    """

    def leaf(spec: PartitionSpec, value: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=NamedSharding(mesh, spec))

    return _map_variables(tree, mesh, rules, leaf)
