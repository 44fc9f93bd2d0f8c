"""Host-local batches -> global arrays split along the mesh's batch axes.

Each process loads only its own rows (its data loader is sharded by ``jax.process_index()``)
and `global_batch` assembles one global ``jax.Array`` per leaf without any host seeing the
whole batch: ``jax.make_array_from_process_local_data`` places each local row block on the
local devices that own it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nnx_sharding.rules import Rules, axes_tuple
from nnx_sharding.specs import ShardingError, logical_to_spec

__all__ = ["batch_sharding", "global_batch", "local_batch_shards"]


def local_batch_shards(mesh: Mesh, batch_axes: Sequence[str]) -> tuple[int, int]:
    """Number of distinct batch slices held by this process, and in the whole mesh.

    Args:
      mesh: the device mesh.
      batch_axes: the mesh axes the batch dimension is split along.

    Returns:
      ``(local, total)``: the batch splits into ``total`` equal slices, of which this
      process's devices hold ``local``.
    """
    positions = [mesh.axis_names.index(axis) for axis in batch_axes]
    total = math.prod(mesh.devices.shape[p] for p in positions)
    process = jax.process_index()
    owned = {
        tuple(index[p] for p in positions)
        for index, device in np.ndenumerate(mesh.devices)
        if device.process_index == process
    }
    return len(owned), total


def batch_sharding(
    ndim: int, *, mesh: Mesh, rules: Rules, logical_axes: Sequence[str | None] = ("batch",)
) -> NamedSharding:
    """The ``NamedSharding`` of a global batch array of rank ``ndim``.

    Args:
      ndim: rank of the array.
      mesh: the device mesh.
      rules: the strategy; its ``activations`` table maps ``batch`` (and ``seq``).
      logical_axes: names of the leading dimensions (the rest are replicated), e.g.
        ``("batch", "seq")`` to also split image rows for context parallelism.

    Returns:
      The sharding (the spec is not checked against a shape here; `global_batch` checks it).
    """
    names = (tuple(logical_axes) + (None,) * ndim)[:ndim]
    entries = []
    for name in names:
        axes = rules.activations.get(name) if name is not None else None
        entries.append(axes)
    return NamedSharding(mesh, PartitionSpec(*entries))


def global_batch(
    local: Any,
    *,
    mesh: Mesh,
    rules: Rules,
    logical_axes: Sequence[str | None] = ("batch",),
) -> Any:
    """Turns a tree of host-local arrays into global arrays sharded along the batch axes.

    Every process calls it with its own rows (same shapes on every process). The global batch
    has ``local_rows * total / local`` rows, where ``(local, total)`` is
    `local_batch_shards` (on one process: the local batch is the global batch).

    Args:
      local: pytree of numpy or JAX arrays, leading dimension = this process's rows.
      mesh: the device mesh.
      rules: the strategy (``batch`` -> ``("data", "fsdp")`` in every table).
      logical_axes: names of the leading dimensions; ``("batch", "seq")`` also splits the
        second dimension (image rows -> tokens) for context parallelism.

    Returns:
      The same tree of global ``jax.Array``s.

    Raises:
      ShardingError: the local batch does not divide into the batch slices this process holds
        (or another named dimension does not divide its mesh axes).
    """

    def to_global(path: Any, array: Any) -> jax.Array:
        return _global_leaf(path, array, mesh=mesh, rules=rules, logical_axes=logical_axes)

    return jax.tree_util.tree_map_with_path(to_global, local)


def _global_leaf(
    path: Any, array: Any, *, mesh: Mesh, rules: Rules, logical_axes: Sequence[str | None]
) -> jax.Array:
    """One leaf of `global_batch`: this process's rows -> the global, sharded array."""
    array = np.asarray(array) if not isinstance(array, jax.Array) else array
    where = f"batch leaf {jax.tree_util.keystr(path, simple=True, separator='.') or '<root>'}"
    if array.ndim == 0:
        raise ShardingError(
            f"{where} is a scalar; global_batch needs a leading batch dimension. "
            "Pass scalars to the step as ordinary arguments instead."
        )
    names = (tuple(logical_axes) + (None,) * array.ndim)[: array.ndim]
    batch_axes = axes_tuple(rules.activations.get(names[0]) if names[0] else None)
    local_shards, total_shards = local_batch_shards(mesh, batch_axes)
    rows = array.shape[0]
    if rows % local_shards:
        raise ShardingError(
            f"{where}: the host-local batch of {rows} rows does not divide into the "
            f"{local_shards} batch slices this process holds (mesh axes {batch_axes} = "
            f"{ {axis: mesh.shape[axis] for axis in batch_axes} }, {total_shards} slices in "
            f"all over {jax.process_count()} process(es)). Use a per-process batch that is "
            f"a multiple of {local_shards}."
        )
    global_shape = (rows * total_shards // local_shards, *array.shape[1:])
    spec = logical_to_spec(
        names, global_shape, array.dtype, mesh=mesh, rules=rules, table="activations", where=where
    )
    return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), array, global_shape)
