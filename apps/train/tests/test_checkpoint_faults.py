"""Damaged, partial and in-flight checkpoints: named, skipped, and never deleted too early.

A small hand-made `TrainState` (one array sharded over the 8 fake devices) is saved at steps
1 and 2 with the trainer's `Checkpointer`; then the files of step 2 are damaged in the ways a
preempted machine or a broken copy damages them. Restoring must name the folder of step 2 in
a warning, return exactly the arrays and data position of step 1, and set step 2 aside as
``2.corrupt``. Equality is exact (the arrays are copies of what was saved): no tolerance.
"""

import logging
import shutil
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nnx_train.checkpointing import COMMIT_MARKER, Checkpointer, fingerprints
from nnx_train.data import SyntheticSource, make_iterator
from nnx_train.errors import CheckpointError
from nnx_train.state import TrainState, scalar


def _mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:8]), ("data",))


def _state(step: int) -> TrainState:
    sharded = NamedSharding(_mesh(), PartitionSpec("data"))
    weight = jax.device_put(
        jnp.arange(64 * 32, dtype=jnp.float32).reshape(64, 32) / 7 + step, sharded
    )
    return TrainState(
        step=scalar(step),
        params={"w": weight, "b": jnp.full((5,), step, jnp.bfloat16)},
        rest={},
        opt_state={"mu": {"w": weight * 0.5}},
        ema={"ema_0.9": {"w": weight + 1.0}},
        key=jax.random.key_data(jax.random.key(step)),
        num_nonfinite=scalar(0),
    )


def _abstract() -> TrainState:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _state(0)
    )


def _iterator():
    source = SyntheticSource(shape=(2, 2, 1), num_classes=2, num_examples=8)
    return make_iterator(source, global_batch_size=2, seed=0, read_threads=0, prefetch_batches=1)


def _save_two_steps(directory, keep=3):
    """Saves steps 1 and 2; the iterator has read 1 batch at step 1 and 3 at step 2."""
    checkpointer = Checkpointer(str(directory), keep=keep, model_name="toy")
    iterator = _iterator()
    next(iterator)
    checkpointer.save(_state(1), iterator)
    next(iterator), next(iterator)
    checkpointer.save(_state(2), iterator)
    checkpointer.close()


def _restore(directory):
    checkpointer = Checkpointer(str(directory), keep=3, model_name="toy")
    iterator = _iterator()
    try:
        return checkpointer.restore(_abstract(), iterator), iterator
    finally:
        checkpointer.close()


def _assert_is_step(state, iterator, step: int, batches_read: int):
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(_state(step))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fresh = _iterator()
    for _ in range(batches_read):
        next(fresh)
    np.testing.assert_array_equal(next(iterator)["x"], next(fresh)["x"])


def _data_files(step_dir):
    """Every data file of the arrays (the files in OCDBT's ``d`` folders)."""
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def _largest_data_files(step_dir):
    """The biggest data files of the arrays (OCDBT may keep the same file in two ``d``
    folders, of which only one is read, so every copy of that size is returned)."""
    files = _data_files(step_dir)
    size = max(p.stat().st_size for p in files)
    return [p for p in files if p.stat().st_size == size]


def test_fingerprint_ignores_layout_and_sees_one_bit():
    x = jnp.arange(64 * 32, dtype=jnp.float32).reshape(64, 32) / 7
    sharded = jax.device_put(x, NamedSharding(_mesh(), PartitionSpec(None, "data")))
    base = fingerprints({"x": x})["x"]
    assert fingerprints({"x": sharded})["x"] == base  # 8 shards vs one device
    flipped = x.at[17, 3].set(
        jax.lax.bitcast_convert_type(
            jax.lax.bitcast_convert_type(x[17, 3], jnp.uint32) ^ jnp.uint32(1), jnp.float32
        )
    )
    assert fingerprints({"x": flipped})["x"] != base  # lowest mantissa bit of one element
    swapped = x.at[0, 0].set(x[0, 1]).at[0, 1].set(x[0, 0])
    assert fingerprints({"x": swapped})["x"] != base  # same values, other positions
    # Halving moves every bit pattern by the same power of two, which a weighted sum of the
    # raw bits (without mixing) misses for 2048 elements.
    assert fingerprints({"x": x * 0.5})["x"] != base


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        # Bytes flipped in the middle of the biggest data file (whether the compressed
        # stream then fails to decode or decodes to other numbers depends on the layout).
        ("flip_bytes", ""),
        # Files that decode without error to other numbers (one element of one array
        # changed): tensorstore cannot tell; the manifest's fingerprints can.
        ("changed_array", "1 array(s) differ from their fingerprint (ema/ema_0.9/w)"),
        ("truncate", "Error reading"),
        ("garbage_manifest", "manifest unreadable"),
        ("no_commit_marker", f"no {COMMIT_MARKER}: partly written or copied"),
    ],
)
def test_damaged_latest_is_named_and_previous_used(tmp_path, caplog, damage, reason):
    _save_two_steps(tmp_path)
    step_dir = tmp_path / "2"
    match damage:
        case "flip_bytes":
            # Every data file: under load OCDBT may lay the arrays out over several files,
            # and a flip inside the largest one alone then sometimes hit bytes no read uses.
            for target in _data_files(step_dir):
                data = bytearray(target.read_bytes())
                middle = len(data) // 2
                data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
                target.write_bytes(bytes(data))
        case "changed_array":
            other = tmp_path / "other"
            state = _state(2)
            weight = state.ema["ema_0.9"]["w"]
            state = state.replace(ema={"ema_0.9": {"w": weight.at[3, 4].add(1.0)}})
            writer = Checkpointer(str(other), keep=1, model_name="toy")
            writer.save(state, _iterator())
            writer.close()
            shutil.rmtree(step_dir / "state")
            shutil.copytree(other / "2" / "state", step_dir / "state")
            shutil.rmtree(other)
        case "truncate":
            for target in _largest_data_files(step_dir):
                target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        case "garbage_manifest":
            (step_dir / "manifest" / "metadata").write_text("{not json")
        case "no_commit_marker":
            (step_dir / COMMIT_MARKER).unlink()
    with caplog.at_level(logging.WARNING, logger="nnx_train.checkpointing"):
        state, iterator = _restore(tmp_path)
    _assert_is_step(state, iterator, step=1, batches_read=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nnx_train.checkpointing"]
    named = [w for w in warnings if f"Checkpoint {step_dir} is corrupt" in w]
    assert len(named) == 1 and reason in named[0], warnings
    assert "\n" not in named[0]
    # Kept for inspection under another name; no longer a checkpoint, so the run rewrites 2.
    assert (tmp_path / "2.corrupt").is_dir() and not step_dir.exists()
    checkpointer = Checkpointer(str(tmp_path), keep=3, model_name="toy")
    assert checkpointer.all_steps() == [1]
    checkpointer.close()


def test_no_readable_checkpoint_lists_every_step(tmp_path):
    _save_two_steps(tmp_path)
    for step in (1, 2):
        (tmp_path / str(step) / COMMIT_MARKER).unlink()
    with pytest.raises(CheckpointError) as info:
        _restore(tmp_path)
    message = str(info.value)
    assert message == (
        f"No readable checkpoint in {tmp_path}: step 2: no {COMMIT_MARKER}: partly written or "
        f"copied; step 1: no {COMMIT_MARKER}: partly written or copied. They are kept for "
        "inspection; restore a good copy into that folder, or start a new --workdir (or "
        "checkpoint.directory)."
    )


def test_temporary_folder_is_never_a_checkpoint(tmp_path):
    _save_two_steps(tmp_path)
    # A complete copy of step 2 under orbax's temporary name (what a kill before the
    # rename leaves behind), even with its commit marker: still not a checkpoint.
    shutil.copytree(tmp_path / "2", tmp_path / "3.orbax-checkpoint-tmp-1234567")
    state, iterator = _restore(tmp_path)
    _assert_is_step(state, iterator, step=2, batches_read=3)
    # Opening the manager removed the leftover (cleanup_tmp_directories).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]


def test_old_checkpoint_survives_until_successor_is_final(tmp_path, monkeypatch):
    """keep=1: while step 2 is being written, step 1 stays complete on disk."""
    from orbax.checkpoint._src.path import atomicity

    entered, release = threading.Event(), threading.Event()
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def gated_finalize(self):
        entered.set()
        release.wait(timeout=60)
        return await original(self)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", gated_finalize)
    checkpointer = Checkpointer(str(tmp_path), keep=1, model_name="toy")
    iterator = _iterator()
    checkpointer.save(_state(1), iterator)
    release.set()
    checkpointer.wait()
    release.clear()
    entered.clear()
    try:
        checkpointer.save(_state(2), iterator)  # async: returns while the writer thread works
        assert entered.wait(timeout=60)
        # Step 2's files are written but not yet renamed; step 1 is complete on disk (what a
        # process started now, e.g. after a kill, would restore).
        names = sorted(p.name for p in tmp_path.iterdir())
        assert len(names) == 2 and names[0] == "1", names
        assert names[1].startswith("2.orbax-checkpoint-tmp"), names
        assert (tmp_path / "1" / COMMIT_MARKER).is_file()
        assert not (tmp_path / names[1] / COMMIT_MARKER).exists()
    finally:
        release.set()
    checkpointer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]


def _as_two_processes(step_dir, second_position=None):
    """Rewrites the data item of ``step_dir`` as if 2 processes had saved it."""
    folder = step_dir / "data"
    own = folder / "process_0-of-1.json"
    text = own.read_text()
    own.unlink()
    (folder / "process_0-of-2.json").write_text(text)
    (folder / "process_1-of-2.json").write_text(second_position or text)


def test_global_position_resumes_under_another_process_count(tmp_path):
    _save_two_steps(tmp_path)
    _as_two_processes(tmp_path / "2")
    state, iterator = _restore(tmp_path)  # this test runs as 1 process
    _assert_is_step(state, iterator, step=2, batches_read=3)


def test_per_process_positions_refuse_another_process_count(tmp_path):
    _save_two_steps(tmp_path)
    _as_two_processes(tmp_path / "2", second_position='{"next_index": 7}')
    with pytest.raises(CheckpointError, match="written by 2 processes whose data positions"):
        _restore(tmp_path)
    assert (tmp_path / "2").is_dir()  # not set aside: nothing is wrong with the files
