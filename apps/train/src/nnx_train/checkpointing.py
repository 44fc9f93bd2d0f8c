"""Orbax CheckpointManager around the `TrainState`, the data iterator and a small manifest.

One checkpoint per saved step holds three items:

- ``state``: every array of the `TrainState` as a nested dict (sharded arrays are written
  shard by shard from the hosts that hold them; nothing is gathered);
- ``data``: the Grain iterator position of each host (``process_<i>-of-<n>.json``);
- ``manifest``: JSON with the step, the model name and the path, shape and dtype of every
  array, checked before restoring so that a checkpoint of another model is named as such.

Saves are asynchronous (training continues while arrays are written), keep the newest
``keep`` checkpoints (plus every ``keep_period``-th), go to a local folder or to
``gs://bucket/prefix``, and are atomic: orbax writes to a temporary name and renames it when
complete, and deletes old checkpoints only after the new one is finalised. On restore an
unreadable latest checkpoint is reported by name and the previous one is used.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from nnx_train.errors import CheckpointError
from nnx_train.state import from_nested, state_paths, to_nested

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


def _manifest(state: Any, model_name: str) -> dict:
    leaves = jax.tree.leaves(state)
    return {
        "model": model_name,
        "arrays": {
            "/".join(path): [list(leaf.shape), str(np.dtype(leaf.dtype))]
            for path, leaf in zip(state_paths(state), leaves)
        },
    }


def _describe_mismatch(saved: dict, expected: dict) -> str:
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = [
        f"{k}: checkpoint {saved[k][0]} {saved[k][1]} vs model {expected[k][0]} {expected[k][1]}"
        for k in sorted(set(saved) & set(expected))
        if saved[k] != expected[k]
    ]
    parts = []
    for title, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", reshaped),
    ):
        if items:
            shown = "; ".join(items[:5]) + (
                f"; ... ({len(items)} in all)" if len(items) > 5 else ""
            )
            parts.append(f"{title}: {shown}")
    return " | ".join(parts)


class Checkpointer:
    """Saves and restores `TrainState` + data iterator with an orbax ``CheckpointManager``.

    Args:
      directory: local folder or ``gs://bucket/prefix``.
      keep: number of newest checkpoints kept.
      keep_period: also keep every checkpoint whose step is a multiple of this (0: none).
      async_save: write arrays in a background thread.
      model_name: recorded in the manifest and checked on restore.
    """

    def __init__(
        self,
        directory: str,
        *,
        keep: int,
        keep_period: int = 0,
        async_save: bool = True,
        model_name: str = "",
    ) -> None:
        if keep < 1:
            raise ValueError(f"checkpoint.keep must be at least 1, got {keep}.")
        path = directory if "://" in directory else os.path.abspath(directory)
        self.directory = epath.Path(path)
        self.model_name = model_name
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_period or None,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        try:
            self.manager = ocp.CheckpointManager(
                self.directory, item_names=("state", "data", "manifest"), options=options
            )
        except (OSError, PermissionError) as err:
            raise CheckpointError(
                f"Cannot create the checkpoint directory {self.directory} ({err}); choose a "
                "writable --workdir or checkpoint.directory."
            ) from err

    def latest_step(self) -> int | None:
        """Newest finalised step, or ``None``."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Finalised steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, state: Any, data_iterator: Any, *, force: bool = False) -> bool:
        """Starts saving ``state`` and the iterator position at ``state.step``.

        Returns:
          Whether a save was started (orbax skips a step that already exists).
        """
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(to_nested(state)),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            manifest=ocp.args.JsonSave(_manifest(state, self.model_name)),
        )
        return self.manager.save(step, args=args, force=force)

    def restore(self, abstract_state: Any, data_iterator: Any) -> Any:
        """Restores the newest readable checkpoint into ``abstract_state``'s layout.

        Args:
          abstract_state: the `TrainState` with ``jax.ShapeDtypeStruct`` leaves carrying the
            target shardings (the mesh may differ from the one that saved).
          data_iterator: the Grain iterator; its position is set in place.

        Returns:
          The restored `TrainState`.

        Raises:
          CheckpointError: the checkpoint belongs to another model, or none is readable.
        """
        expected = _manifest(abstract_state, self.model_name)["arrays"]
        failures = []
        for step in reversed(self.all_steps()):
            try:
                manifest = self.manager.restore(
                    step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
                ).manifest
            except Exception as err:  # noqa: BLE001 - any unreadable file means: try older
                failures.append(f"step {step}: manifest unreadable ({type(err).__name__}: {err})")
                log.warning(
                    "Checkpoint %s/%s is unreadable; trying the previous one.", self.directory, step
                )
                continue
            if manifest["arrays"] != expected:
                raise CheckpointError(
                    f"The checkpoint {self.directory}/{step} was written by another model "
                    f"({manifest.get('model')!r}; this run builds {self.model_name!r}): "
                    f"{_describe_mismatch(manifest['arrays'], expected)}. Use a new --workdir or "
                    "the config that wrote it."
                )
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(to_nested(abstract_state)),
                        data=grain.checkpoint.CheckpointRestore(data_iterator),
                    ),
                )
            except Exception as err:  # noqa: BLE001
                failures.append(f"step {step}: {type(err).__name__}: {err}")
                log.warning(
                    "Checkpoint %s/%s is corrupt (%s); trying the previous one.",
                    self.directory,
                    step,
                    err,
                )
                continue
            self._set_aside([s for s in self.all_steps() if s > step])
            return from_nested(restored.state, abstract_state)
        raise CheckpointError(
            f"No readable checkpoint in {self.directory}: "
            + "; ".join(failures)
            + ". Delete the broken step folders or start a new --workdir."
        )

    def _set_aside(self, steps: list[int]) -> None:
        """Renames unreadable newer checkpoints to ``<step>.corrupt`` so that they are kept
        for inspection but no longer count as checkpoints (the run rewrites those steps)."""
        for step in steps:
            source = self.directory / str(step)
            target = self.directory / f"{step}.corrupt"
            if target.exists():
                target.rmtree()
            source.rename(target)
            log.warning("Moved the unreadable checkpoint %s to %s.", source, target)
        if steps:
            self.manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are finalised."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
