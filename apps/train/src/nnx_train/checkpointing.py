"""Orbax CheckpointManager around the `TrainState`, the data iterator and a small manifest.

One checkpoint per saved step holds three items:

- ``state``: every array of the `TrainState` as a nested dict (sharded arrays are written
  shard by shard from the hosts that hold them; nothing is gathered);
- ``data``: the Grain iterator position of each host (``process_<i>-of-<n>.json``); a run
  with another number of processes resumes from it when the positions are global (the
  map-style pipeline: every process saves the same one);
- ``manifest``: JSON with the step, the model name and the path, shape and dtype of every
  array, checked before restoring so that a checkpoint of another model is named as such.

Saves are asynchronous (training continues while arrays are written), keep the newest
``keep`` checkpoints (plus every ``keep_period``-th), go to a local folder or to
``gs://bucket/prefix``, and are atomic: orbax writes to a temporary name and renames it when
complete, and deletes old checkpoints only after the new one is finalised. On restore a
latest checkpoint that cannot be trusted is reported by name (a warning naming its folder) and
the previous one is used; it is then renamed ``<step>.corrupt``. Untrusted means: no
``commit_success.txt`` (orbax writes it last, so its absence marks a partly written or partly
copied step), unreadable files (truncated, missing), or arrays whose fingerprint differs from
the one in the manifest (bytes changed on disk: tensorstore reads such files without error).

On a bucket a step without the marker is reported on open and left in place; orbax's temporary
folder clean-up runs only on local disks, where the workdir lock keeps other runs away.

Fingerprints (`nnx_train.fingerprint`) cover every array of the state and the data-iterator
position of every process, so a valid but wrong value of either is named, not resumed.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from nnx_train.checkpoint_errors import (
    quiet_orbax_thread_errors,
    read_permission_error,
    warn_uncommitted,
    write_error,
)
from nnx_train.errors import CheckpointError, ConfigError
from nnx_train.fingerprint import (
    build_manifest,
    describe_mismatch,
    fingerprints,
    position_fingerprint,
    position_fingerprints,
    position_name,
)
from nnx_train.multihost import barrier
from nnx_train.preemption import TrainerCheckpointManager
from nnx_train.state import from_nested, to_nested

__all__ = ["COMMIT_MARKER", "Checkpointer", "fingerprints"]

log = logging.getLogger(__name__)

# orbax writes this file last: inside the temporary folder just before the rename on local
# disks, as the final object on GCS. A step folder without it was never completed.
COMMIT_MARKER = "commit_success.txt"


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _committed(path: epath.Path) -> bool:
    """Whether ``path`` holds the commit marker; a folder it may not read raises
    `PermissionError` (``Path.exists`` would say "no marker", as if the step were broken)."""
    marker = path / COMMIT_MARKER
    if "://" in str(path):
        return marker.exists()
    try:
        os.stat(os.fspath(marker))
    except FileNotFoundError:
        return False
    return True


class _Untrusted(Exception):
    """A step folder that cannot be trusted; the message is the reason."""


class Checkpointer:
    """Saves and restores `TrainState` + data iterator with an orbax ``CheckpointManager``.

    Args:
      directory: local folder or ``gs://bucket/prefix``.
      keep: number of newest checkpoints kept.
      keep_period: also keep every checkpoint whose step is a multiple of this (0: none).
      async_save: write arrays in a background thread.
      model_name: recorded in the manifest and checked on restore.
      read_only: open for `restore` only (``sample`` / ``evaluate``): nothing is created,
        cleaned up, renamed or saved, so a run training in the same workdir is not touched.
    """

    def __init__(
        self,
        directory: str,
        *,
        keep: int,
        keep_period: int = 0,
        async_save: bool = True,
        model_name: str = "",
        read_only: bool = False,
    ) -> None:
        if keep < 1:
            raise ConfigError(
                f"checkpoint.keep={keep}: at least one checkpoint must be kept; set "
                "checkpoint.keep to 1 or more."
            )
        quiet_orbax_thread_errors()
        remote = "://" in directory
        self.directory = epath.Path(directory if remote else os.path.abspath(directory))
        self.model_name = model_name
        self.read_only = read_only
        if remote and jax.process_index() == 0:
            warn_uncommitted(self.directory, COMMIT_MARKER)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_period or None,
            enable_async_checkpointing=async_save,
            create=not read_only,
            # On a bucket a step folder without its commit marker counts as temporary and
            # orbax would delete it on open: it is reported instead and left in place.
            cleanup_tmp_directories=not (remote or read_only),
            read_only=read_only,
        )
        try:
            self.manager = TrainerCheckpointManager(
                self.directory, item_names=("state", "data", "manifest"), options=options
            )
        except (OSError, PermissionError) as err:
            raise CheckpointError(
                f"Cannot create the checkpoint directory {self.directory} ({err}); choose a "
                "writable --workdir or checkpoint.directory."
            ) from err

    def latest_step(self) -> int | None:
        """Newest step folder orbax lists (`restore` checks that it is complete), or ``None``."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Step folders orbax lists (temporary folders excluded), oldest first."""
        return sorted(self.manager.all_steps())

    def step_path(self, step: int) -> epath.Path:
        """The folder of ``step``."""
        return self.directory / str(step)

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
            manifest=ocp.args.JsonSave(
                {
                    **build_manifest(state, self.model_name),
                    "fingerprints": fingerprints(state),
                    "positions": position_fingerprints(data_iterator),
                }
            ),
        )
        try:
            return self.manager.save(step, args=args, force=force)
        except Exception as err:  # noqa: BLE001 - one line for disk full / no permission
            raise write_error(err, self.directory) or err from err

    def restore(self, abstract_state: Any, data_iterator: Any, *, step: int | None = None) -> Any:
        """Restores the newest readable checkpoint (or ``step``) into ``abstract_state``'s layout.

        Args:
          abstract_state: the `TrainState` with ``jax.ShapeDtypeStruct`` leaves carrying the
            target shardings (the mesh may differ from the one that saved).
          data_iterator: the Grain iterator; its position is set in place.
          step: restore this step only (default: the newest readable one).

        Returns:
          The restored `TrainState`.

        Raises:
          CheckpointError: the checkpoint belongs to another model, or none is readable.
        """
        expected = build_manifest(abstract_state, self.model_name)["arrays"]
        failures = []
        steps = self.all_steps()
        if step is not None and step not in steps:
            raise CheckpointError(
                f"No checkpoint of step {step} in {self.directory}; saved steps: "
                f"{', '.join(map(str, steps)) or 'none'}. Pick one of them with --step."
            )
        for candidate in reversed(steps if step is None else [step]):
            try:
                state, position = self._read_step(candidate, abstract_state, expected)
            except _Untrusted as reason:
                self._reject(failures, candidate, str(reason))
                continue
            data_iterator.set_state(position)
            if not self.read_only:
                self._set_aside([s for s in steps if s > candidate])
            return state
        raise CheckpointError(
            f"No readable checkpoint in {self.directory}: "
            + "; ".join(failures)
            + ". They are kept for inspection; restore a good copy into that folder, or start "
            "a new --workdir (or checkpoint.directory)."
        )

    def _read_step(self, step: int, abstract_state: Any, expected: dict) -> tuple[Any, dict]:
        """``(state, data position)`` of one step folder, checked against its manifest.

        Raises:
          _Untrusted: the step cannot be trusted (the reason says why); try an older one.
          CheckpointError: the step belongs to another model, or its data positions cannot
            be split over this run's processes.
        """
        path = self.step_path(step)
        try:
            if not _committed(path):
                raise _Untrusted(f"no {COMMIT_MARKER}: partly written or copied")
            manifest = self.manager.restore(
                step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
            ).manifest
        except _Untrusted:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file means: try older
            if read_permission_error(err, path) is not None:
                raise read_permission_error(err, path) from err
            raise _Untrusted(f"manifest unreadable ({_one_line(err)})") from err
        if manifest["arrays"] != expected:
            raise CheckpointError(
                f"The checkpoint {path} was written by another model "
                f"({manifest.get('model')!r}; this run builds {self.model_name!r}): "
                f"{describe_mismatch(manifest['arrays'], expected)}. Use a new --workdir or "
                "the config that wrote it."
            )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(to_nested(abstract_state))),
            )
            position, name = self._data_position(step)
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001
            if read_permission_error(err, path) is not None:
                raise read_permission_error(err, path) from err
            raise _Untrusted(_one_line(err)) from err
        saved_position = manifest.get("positions", {}).get(name)  # absent: older versions
        if saved_position is not None and saved_position != position_fingerprint(position):
            raise _Untrusted(
                f"the data-iterator position data/{name}.json differs from its fingerprint"
            )
        state = from_nested(restored.state, abstract_state)
        saved = manifest.get("fingerprints")  # absent in checkpoints of older versions
        if saved is not None:
            changed = [k for k, v in fingerprints(state).items() if saved.get(k) != v]
            if changed:
                shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
                raise _Untrusted(f"{len(changed)} array(s) differ from their fingerprint ({shown})")
        return state, position

    def _data_position(self, step: int) -> tuple[dict, str]:
        """This process's saved data-iterator state (``data/process_<i>-of-<n>.json``) and
        the name of the file it was read from.

        A checkpoint written by another number of processes still resumes when every saved
        position is the same (the map-style pipeline's position is the index of the next
        global batch, the same on every process); positions that differ per process (a
        WebDataset stream's shards) cannot be re-split and raise.
        """
        folder = self.step_path(step) / "data"
        own_name = position_name(jax.process_index(), jax.process_count())
        own = folder / f"{own_name}.json"
        if own.exists():
            return json.loads(own.read_text()), own_name
        saved = sorted(folder.glob("process_*-of-*.json"))
        if not saved:
            raise FileNotFoundError(f"no data-iterator position in {folder}")
        positions = {json.dumps(json.loads(f.read_text()), sort_keys=True) for f in saved}
        if len(positions) > 1:
            raise CheckpointError(
                f"The checkpoint {self.step_path(step)} was written by {len(saved)} processes "
                f"whose data positions differ (a stream split by process); this run has "
                f"{jax.process_count()}. Resume with {len(saved)} processes, or start a new "
                "--workdir."
            )
        log.info(
            "Checkpoint %s was written by %d process(es), this run has %d: the data position "
            "is global, so every process continues from it.",
            self.step_path(step),
            len(saved),
            jax.process_count(),
        )
        return json.loads(positions.pop()), saved[0].name.removesuffix(".json")

    def _reject(self, failures: list[str], step: int, reason: str) -> None:
        failures.append(f"step {step}: {reason}")
        log.warning(
            "Checkpoint %s is corrupt (%s); trying the previous one.", self.step_path(step), reason
        )

    def _set_aside(self, steps: list[int]) -> None:
        """Renames unreadable newer checkpoints to ``<step>.corrupt`` so that they are kept
        for inspection but no longer count as checkpoints (the run rewrites those steps).

        Every process calls it with the same ``steps`` (listed before any rename: the first
        barrier); process 0 renames, the others wait for it (the second barrier).
        """
        barrier("nnx_train:checkpoint-listed")
        if jax.process_index() == 0:
            self._rename_corrupt(steps)
        barrier("nnx_train:checkpoint-set-aside")
        if steps:
            self.manager.reload()

    def _rename_corrupt(self, steps: list[int]) -> None:
        """``<step>`` -> ``<step>.corrupt`` (``.corrupt-2``, ... when earlier copies exist:
        none is ever removed); a directory that cannot be changed is an error naming it."""
        for step in steps:
            source = self.directory / str(step)
            target, copy = self.directory / f"{step}.corrupt", 1
            while target.exists():
                copy += 1
                target = self.directory / f"{step}.corrupt-{copy}"
            try:
                source.rename(target)
            except OSError as err:
                raise CheckpointError(
                    f"Cannot set aside the unreadable checkpoint {source} as {target.name} "
                    f"({_one_line(err)}): the checkpoint directory is not writable, so this "
                    "run could not save either. Make it writable, or resume from a writable "
                    "copy (--config.checkpoint.directory)."
                ) from err
            log.warning("Moved the unreadable checkpoint %s to %s.", source, target)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are finalised.

        Raises:
          CheckpointError: the disk is full or not writable (one line).
        """
        try:
            self.manager.wait_until_finished()
        except Exception as err:  # noqa: BLE001
            raise write_error(err, self.directory) or err from err

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.wait()
        self.manager.close()
