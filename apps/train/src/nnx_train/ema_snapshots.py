"""Snapshots of the power-function EMAs during training, and post-hoc EMAs rebuilt from them.

EDM2 (Karras et al. 2024, Section 3 and Appendix C; NVlabs/edm2 ``training/phema.py``
and ``reconstruct_phema.py``) stores the two tracked power-function averages every few
million images and, after training, combines them linearly into the average of any other EMA
length ``sigma_rel`` at any stored step (`nnx_train.power_ema.solve_posthoc_coefficients`).

Layout: one orbax ``CheckpointManager`` folder, one step folder per snapshot (all kept), one
item per tracked average (``phema_<sigma_rel>``, written shard by shard from the hosts that
hold the shards, like the checkpoints of `nnx_train.checkpointing`) plus a ``meta`` JSON item
``{"step", "sigma_rels"}``. Writes are asynchronous and atomic (orbax's temporary folder).
A resumed run rewrites nothing: a step folder that exists is skipped (the replayed steps are
the same steps).
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from nnx_train.ema import power_ema_name
from nnx_train.errors import CheckpointError, ConfigError
from nnx_train.power_ema import MAX_SIGMA_REL, solve_posthoc_coefficients
from nnx_train.preemption import TrainerCheckpointManager
from nnx_train.state import from_nested, to_nested

__all__ = [
    "SnapshotWriter",
    "check_power_ema",
    "list_snapshots",
    "reconstruct_from_snapshots",
    "snapshot_directory",
]

SNAPSHOT_FOLDER = "phema_snapshots"


def check_power_ema(ema: Any) -> tuple[float, ...]:
    """The tracked EMA lengths of ``config.ema``, checked; raises `ConfigError`."""
    sigma_rels = tuple(float(s) for s in ema.sigma_rels)
    if any(not 0.0 < s < MAX_SIGMA_REL for s in sigma_rels):
        raise ConfigError(
            f"ema.sigma_rels={sigma_rels}: each EMA length must lie in (0, {MAX_SIGMA_REL:.4f}); "
            "EDM2 tracks (0.05, 0.1)."
        )
    if len(set(sigma_rels)) < len(sigma_rels):
        raise ConfigError(f"ema.sigma_rels={sigma_rels} repeats a length; list each once.")
    if ema.snapshot_every_steps and not sigma_rels:
        raise ConfigError(
            f"ema.snapshot_every_steps={ema.snapshot_every_steps} but ema.sigma_rels is empty: "
            "set ema.sigma_rels (EDM2: (0.05, 0.1)) or ema.snapshot_every_steps=0."
        )
    return sigma_rels


def snapshot_directory(ema: Any, checkpoint_directory: str) -> str:
    """``ema.snapshot_directory``, or ``phema_snapshots`` beside the checkpoint folder (on
    the same disk or bucket)."""
    if ema.snapshot_directory:
        return str(ema.snapshot_directory)
    parent = posixpath.dirname(str(checkpoint_directory).rstrip("/"))
    return posixpath.join(parent, SNAPSHOT_FOLDER)


def _manager(directory: str, *, async_save: bool = True) -> ocp.CheckpointManager:
    path = directory if "://" in directory else str(epath.Path(directory).absolute())
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None, enable_async_checkpointing=async_save, create=True
    )
    return TrainerCheckpointManager(epath.Path(path), options=options)


class SnapshotWriter:
    """Saves the power-function EMAs of a `TrainState` every ``every_steps`` steps.

    Args:
      directory: local folder or ``gs://bucket/prefix`` (`snapshot_directory`).
      sigma_rels: the tracked EMA lengths (``config.ema.sigma_rels``).
      every_steps: snapshot interval in optimiser steps (> 0).
      async_save: write in a background thread.
    """

    def __init__(
        self,
        directory: str,
        *,
        sigma_rels: Sequence[float],
        every_steps: int,
        async_save: bool = True,
    ) -> None:
        if not sigma_rels or every_steps <= 0:
            raise ConfigError(
                f"ema.snapshot_every_steps={every_steps} with ema.sigma_rels={tuple(sigma_rels)}: "
                "snapshots need at least one sigma_rel and a positive interval (EDM2: "
                "sigma_rels=(0.05, 0.1), one snapshot every 8 Mi images)."
            )
        self.sigma_rels = tuple(float(s) for s in sigma_rels)
        self.every_steps = int(every_steps)
        self.manager = _manager(directory, async_save=async_save)

    def maybe_save(self, state: Any, step: int, *, final: bool = False) -> bool:
        """Starts saving the averages when ``step`` is a multiple of ``every_steps`` or the
        last step (``final``); a collective (every process calls it)."""
        if (step % self.every_steps and not final) or step in self.manager.all_steps():
            return False
        items = {
            name: ocp.args.StandardSave(to_nested(state.ema[name]))
            for name in map(power_ema_name, self.sigma_rels)
        }
        meta = {"step": int(step), "sigma_rels": list(self.sigma_rels)}
        args = ocp.args.Composite(meta=ocp.args.JsonSave(meta), **items)
        return self.manager.save(step, args=args)

    def wait(self) -> None:
        """Blocks until pending writes are finalised."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def list_snapshots(directory: str) -> list[tuple[int, tuple[float, ...]]]:
    """``[(step, sigma_rels)]`` of the complete snapshots in ``directory``, oldest first."""
    manager = _manager(directory)
    found = []
    for step in sorted(manager.all_steps()):
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        found.append((int(meta["step"]), tuple(float(s) for s in meta["sigma_rels"])))
    manager.close()
    return found


def _select_inputs(
    snapshots: list[tuple[int, tuple[float, ...]]], at_step: int, sources: Sequence[float] | None
) -> list[tuple[int, float]]:
    inputs = [
        (step, sigma_rel)
        for step, sigma_rels in snapshots
        if step <= at_step
        for sigma_rel in sigma_rels
        if sources is None or any(np.isclose(sigma_rel, s) for s in sources)
    ]
    if not inputs:
        raise CheckpointError(
            f"No power-function EMA snapshot at or before step {at_step}"
            + (f" with sigma_rel in {tuple(sources)}" if sources is not None else "")
            + f" (found {[s for s, _ in snapshots]}); train with ema.sigma_rels and "
            "ema.snapshot_every_steps set, or choose another step."
        )
    return inputs


def reconstruct_from_snapshots(
    directory: str,
    like: Any,
    sigma_rels: Sequence[float],
    *,
    at_step: int | None = None,
    sources: Sequence[float] | None = None,
) -> tuple[list[Any], np.ndarray, list[tuple[int, float]]]:
    """Post-hoc power-function EMAs of lengths ``sigma_rels`` at ``at_step`` (EDM2 Appendix C, Algorithm 3).

    Reads each snapshot once and accumulates ``sum_i x_im ema_i`` for every wanted length
    ``m`` on the devices of ``like`` (float32 sums; memory: one copy of the parameters per
    wanted length plus one snapshot).

    Args:
      directory: the snapshot folder (`snapshot_directory`).
      like: the parameter pytree (``nnx.State``) as ``jax.ShapeDtypeStruct`` leaves carrying
        the target shardings, or as arrays (their shardings are used).
      sigma_rels: ``(M,)`` wanted EMA lengths in ``(0, 0.2887)``.
      at_step: the step whose averages are wanted (default: the newest snapshot); snapshots
        after it are not used.
      sources: use only the snapshots of these tracked lengths (default: all).

    Returns:
      ``(averages, coefficients, inputs)``: ``M`` pytrees shaped like ``like``, the
      ``(N, M)`` least-squares coefficients, and the ``N`` ``(step, sigma_rel)`` inputs.
    """
    snapshots = list_snapshots(directory)
    if at_step is None:
        at_step = max((step for step, _ in snapshots), default=0)
    inputs = _select_inputs(snapshots, at_step, sources)
    coefficients = solve_posthoc_coefficients(
        [s for s, _ in inputs],
        [r for _, r in inputs],
        [at_step] * len(sigma_rels),
        sigma_rels,
    )
    target = to_nested(jax.tree.map(_abstract, like))
    sums = [jax.tree.map(_zeros, target) for _ in sigma_rels]
    manager = _manager(directory)
    for row, (step, sigma_rel) in enumerate(inputs):
        name = power_ema_name(sigma_rel)
        restored = manager.restore(
            step, args=ocp.args.Composite(**{name: ocp.args.StandardRestore(target)})
        )
        weights = [jnp.float32(w) for w in coefficients[row]]
        sums = _accumulate(sums, restored[name], weights)
    manager.close()
    averages = [
        from_nested(jax.tree.map(lambda a, t: a.astype(t.dtype), total, target), like)
        for total in sums
    ]
    return averages, coefficients, inputs


@functools.partial(jax.jit, donate_argnums=(0,))
def _accumulate(sums: list, snapshot: Any, weights: list) -> list:
    """``sums[m] + weights[m] * snapshot`` for every wanted average ``m`` (float32)."""
    return [
        jax.tree.map(lambda a, x, w=w: a + w * x.astype(jnp.float32), total, snapshot)
        for total, w in zip(sums, weights)
    ]


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


def _zeros(leaf: jax.ShapeDtypeStruct) -> jax.Array:
    zeros = jnp.zeros(leaf.shape, jnp.float32)
    return zeros if leaf.sharding is None else jax.device_put(zeros, leaf.sharding)
