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

The fingerprint of an array is ``sum(mix(bits(x) ^ (2654435761 * flat_index))) mod 2**32``
over its elements (bits: the raw 8/16/32-bit pattern, mix: murmur3's 32-bit finaliser).
Integer addition modulo ``2**32`` does not
depend on the order of the sum, so the value is the same on any mesh or sharding, and it is
computed where the shards live (no gather).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from nnx_train.errors import CheckpointError, ConfigError
from nnx_train.multihost import barrier
from nnx_train.state import from_nested, state_paths, to_nested

__all__ = ["COMMIT_MARKER", "Checkpointer", "fingerprints"]

log = logging.getLogger(__name__)

# orbax writes this file last: inside the temporary folder just before the rename on local
# disks, as the final object on GCS. A step folder without it was never completed.
COMMIT_MARKER = "commit_success.txt"

# Knuth's multiplicative-hash constant: mixes the position into each element, so that
# swapped or shifted elements change the fingerprint too.
_POSITION_WEIGHT = 2654435761


def _mix(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finaliser: every input bit flips about half of the output bits (a
    plain weighted sum misses e.g. a halving of every element, whose bit patterns all move
    by the same power of two)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x: jax.Array) -> jax.Array:
    """The raw bit pattern of ``x`` as uint32 (8/16-bit types widened, 64-bit split in two)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    match np.dtype(x.dtype).itemsize:
        case 1:
            return jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
        case 2:
            return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
        case 4:
            return jax.lax.bitcast_convert_type(x, jnp.uint32)
        case 8:
            return jax.lax.bitcast_convert_type(x, jnp.uint32)  # trailing axis of 2 words
    raise TypeError(f"No fingerprint for arrays of dtype {x.dtype}.")


def _fingerprint(x: jax.Array) -> jax.Array:
    """``sum(mix(bits ^ (w * flat_index))) mod 2**32``: order-free, so layout-free.

    Few operations per array on purpose: a train state has hundreds of arrays, and tracing
    costs about as much per operation as the arithmetic itself at small sizes.
    """
    bits = _bits(x)
    index = jax.lax.iota(jnp.uint32, bits.size).reshape(bits.shape)
    return jnp.sum(_mix(bits ^ (index * jnp.uint32(_POSITION_WEIGHT))), dtype=jnp.uint32)


_fingerprint_leaves = jax.jit(lambda leaves: [_fingerprint(leaf) for leaf in leaves])


def fingerprints(state: Any) -> dict[str, int]:
    """``{"a/b/c": fingerprint}`` of every array of ``state`` (computed on its devices).

    The same arrays give the same numbers on any mesh; a changed bit changes the number
    (except with probability about 2**-32).
    """
    leaves = jax.tree.leaves(state)
    # One compiled call per set of devices (a TrainState lives on one mesh: one call).
    groups: dict[Any, list[int]] = {}
    for index, leaf in enumerate(leaves):
        sharding = getattr(leaf, "sharding", None)
        devices = None if sharding is None else frozenset(sharding.device_set)
        groups.setdefault(devices, []).append(index)
    values: list[int] = [0] * len(leaves)
    for indices in groups.values():
        found = jax.device_get(_fingerprint_leaves([leaves[i] for i in indices]))
        for i, value in zip(indices, found):
            values[i] = int(value)
    return {"/".join(path): v for path, v in zip(state_paths(state), values)}


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        path = directory if "://" in directory else os.path.abspath(directory)
        self.directory = epath.Path(path)
        self.model_name = model_name
        self.read_only = read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_period or None,
            enable_async_checkpointing=async_save,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
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
                {**_manifest(state, self.model_name), "fingerprints": fingerprints(state)}
            ),
        )
        return self.manager.save(step, args=args, force=force)

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
        expected = _manifest(abstract_state, self.model_name)["arrays"]
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
            + ". Delete the broken step folders or start a new --workdir."
        )

    def _read_step(self, step: int, abstract_state: Any, expected: dict) -> tuple[Any, dict]:
        """``(state, data position)`` of one step folder, checked against its manifest.

        Raises:
          _Untrusted: the step cannot be trusted (the reason says why); try an older one.
          CheckpointError: the step belongs to another model, or its data positions cannot
            be split over this run's processes.
        """
        path = self.step_path(step)
        if not (path / COMMIT_MARKER).exists():
            raise _Untrusted(f"no {COMMIT_MARKER}: partly written or copied")
        try:
            manifest = self.manager.restore(
                step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())
            ).manifest
        except Exception as err:  # noqa: BLE001 - any unreadable file means: try older
            raise _Untrusted(f"manifest unreadable ({_one_line(err)})") from err
        if manifest["arrays"] != expected:
            raise CheckpointError(
                f"The checkpoint {path} was written by another model "
                f"({manifest.get('model')!r}; this run builds {self.model_name!r}): "
                f"{_describe_mismatch(manifest['arrays'], expected)}. Use a new --workdir or "
                "the config that wrote it."
            )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(to_nested(abstract_state))),
            )
            position = self._data_position(step)
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001
            raise _Untrusted(_one_line(err)) from err
        state = from_nested(restored.state, abstract_state)
        saved = manifest.get("fingerprints")  # absent in checkpoints of older versions
        if saved is not None:
            changed = [k for k, v in fingerprints(state).items() if saved.get(k) != v]
            if changed:
                shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
                raise _Untrusted(f"{len(changed)} array(s) differ from their fingerprint ({shown})")
        return state, position

    def _data_position(self, step: int) -> dict:
        """This process's saved data-iterator state (``data/process_<i>-of-<n>.json``).

        A checkpoint written by another number of processes still resumes when every saved
        position is the same (the map-style pipeline's position is the index of the next
        global batch, the same on every process); positions that differ per process (a
        WebDataset stream's shards) cannot be re-split and raise.
        """
        folder = self.step_path(step) / "data"
        own = folder / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        if own.exists():
            return json.loads(own.read_text())
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
        return json.loads(positions.pop())

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
        for step in steps:
            source = self.directory / str(step)
            target = self.directory / f"{step}.corrupt"
            if target.exists():
                target.rmtree()
            source.rename(target)
            log.warning("Moved the unreadable checkpoint %s to %s.", source, target)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are finalised."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
