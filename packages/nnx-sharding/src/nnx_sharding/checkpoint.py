"""Orbax save and restore of sharded NNX state, shard by shard, never gathered to one host.

Saving writes each array's addressable shards from the process that holds them (tensorstore /
OCDBT), so no host ever assembles a full parameter. Restoring reads into an abstract target
whose leaves carry the *new* shardings: each device reads only the slices it owns, which is
also how a checkpoint written on one mesh is loaded onto another (8 devices -> 4, FSDP ->
tensor parallel). Orbax writes to a temporary directory and renames it when complete, so a
partially written checkpoint is never taken as valid.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax
from flax import nnx
from jax.sharding import Mesh

from nnx_sharding.init import abstract_state
from nnx_sharding.rules import Rules

__all__ = ["restore_sharded", "restore_state", "save_state"]

T = TypeVar("T")


def _orbax() -> Any:
    # Imported on first use: orbax costs about a sixth of this package's import time.
    import orbax.checkpoint as ocp

    return ocp


def _path(directory: str | os.PathLike[str]) -> Any:
    from etils import epath  # orbax's path library (local paths, gs://, ...)

    path = epath.Path(directory)
    if "://" not in os.fspath(directory):
        path = epath.Path(os.path.abspath(os.fspath(directory)))
    return path


def _pure(tree: Any) -> Any:
    """NNX Variables -> their arrays, so the checkpoint is a plain nested dict of arrays."""
    return jax.tree.map(
        lambda node: node.get_value() if isinstance(node, nnx.Variable) else node,
        tree,
        is_leaf=lambda node: isinstance(node, nnx.Variable),
    )


def _checkpointable(tree: Any) -> Any:
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else _pure(tree)


def save_state(directory: str | os.PathLike[str], tree: Any, *, overwrite: bool = False) -> None:
    """Saves a sharded state with orbax; every process must call it with the same path.

    Args:
      directory: checkpoint directory (local path or ``gs://...``); must not exist unless
        ``overwrite``.
      tree: an ``nnx.State`` (e.g. ``nnx.state((model, optimizer))``) or a pytree of arrays.
      overwrite: replace an existing checkpoint.

    Raises:
      FileExistsError: ``directory`` exists and ``overwrite`` is False.
    """
    path = _path(directory)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"Checkpoint directory {path} already exists. Choose a new directory (e.g. one per "
            "step) or pass overwrite=True."
        )
    checkpointer = _orbax().StandardCheckpointer()
    checkpointer.save(path, _checkpointable(tree), force=overwrite)
    checkpointer.wait_until_finished()
    checkpointer.close()


def restore_state(directory: str | os.PathLike[str], target: Any) -> Any:
    """Restores into ``target``'s structure, shapes, dtypes and shardings.

    Args:
      directory: a directory written by `save_state`.
      target: an ``nnx.State`` whose leaves are ``jax.ShapeDtypeStruct`` with shardings
        (`abstract_state`, `abstract_with_shardings`) or concrete arrays (their shardings
        are used); the mesh may differ from the one the checkpoint was saved on.

    Returns:
      ``target`` with every leaf replaced by the restored, sharded ``jax.Array`` (an
      ``nnx.State`` stays an ``nnx.State`` with its Variable metadata).

    Raises:
      FileNotFoundError: ``directory`` does not exist.
    """
    path = _path(directory)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding),
        _checkpointable(target),
    )
    checkpointer = _orbax().StandardCheckpointer()
    restored = checkpointer.restore(path, abstract)
    checkpointer.close()
    if isinstance(target, nnx.State):
        result = jax.tree.map(lambda x: x, target)
        nnx.replace_by_pure_dict(result, restored)
        return result
    return jax.tree.map(
        lambda node, value: node.replace(value) if isinstance(node, nnx.Variable) else value,
        target,
        jax.tree.unflatten(jax.tree.structure(_pure(target)), jax.tree.leaves(restored)),
        is_leaf=lambda node: isinstance(node, nnx.Variable),
    )


def restore_sharded(
    directory: str | os.PathLike[str], build: Callable[[], T], *, mesh: Mesh, rules: Rules
) -> T:
    """Builds ``build()``'s objects directly from a checkpoint, sharded on ``mesh``.

    Nothing is initialised: ``build`` is only traced (``nnx.eval_shape``) for the structure,
    then every array is read from ``directory`` onto its shards.

    Args:
      directory: a checkpoint of ``nnx.state(build())`` written by `save_state`, possibly on
        a different mesh or under different rules.
      build: the zero-argument constructor used for training (see `sharded_init`).
      mesh: the mesh to restore onto.
      rules: the strategy on the new mesh.

    Returns:
      What ``build`` returns, holding the restored arrays.
    """
    graphdef, target = abstract_state(build, mesh=mesh, rules=rules)
    return nnx.merge(graphdef, restore_state(directory, target))
