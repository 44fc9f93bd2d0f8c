"""The trainer's `Checkpointer` on gs:// against the local GCS emulator, with faults.

Same emulator and fault proxy as ``tests/test_gcs_checkpoints.py`` (tests/gcs_emulator.py),
but the trainer's own checkpointer: a `TrainState` sharded over the 8 fake devices, the
data-iterator position and the manifest with its fingerprints (the toy state of
``apps/train/tests/test_checkpoint_faults.py``). 503 answers and dropped connections during
the saves must be retried and resume exactly; a step whose upload never completed is
reported by name when the checkpointer opens the bucket and is not deleted. The emulator
keeps its objects on disk, so it can be restarted in the middle of a save (the request in
flight is lost, the others are refused while it is down): the save is retried to completion.
A full-size checkpoint (64 MiB of float32 in four arrays, uploads of tens of MB in one
request each) is saved and restored exactly.
"""

import importlib.util
import logging
import pathlib
import sys

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from test_checkpoint_faults import _abstract, _assert_is_step, _iterator, _mesh, _state

from nnx_train.checkpointing import COMMIT_MARKER, Checkpointer
from nnx_train.state import TrainState, scalar

FULL_SIZE_MIB = 64  # four float32 arrays of 16 MiB, split by rows over the 8 devices

_spec = importlib.util.spec_from_file_location(
    "gcs_emulator", pathlib.Path(__file__).with_name("gcs_emulator.py")
)
gcs_emulator = importlib.util.module_from_spec(_spec)
sys.modules["gcs_emulator"] = gcs_emulator
_spec.loader.exec_module(gcs_emulator)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with gcs_emulator.gcs_emulator(storage_dir=str(tmp_path_factory.mktemp("bucket"))) as proxy:
        yield proxy


def _save_two_steps(gcs, path: str, faults=None) -> list:
    """Steps 1 and 2 (1 and 3 batches read); ``faults[i]``: the plan armed for save i.

    Returns:
      The `FaultPlan` of each save (``None`` without faults), counts filled in.
    """
    checkpointer = Checkpointer(path, keep=2, model_name="toy")
    iterator = _iterator()
    plans = []
    for step, reads in ((1, 1), (2, 2)):
        for _ in range(reads):
            next(iterator)
        plan = gcs.arm(**faults[step - 1]) if faults else None
        checkpointer.save(_state(step), iterator)
        checkpointer.wait()
        gcs.arm(count=0)
        plans.append(plan)
    checkpointer.close()
    return plans


def _restore(path: str):
    checkpointer = Checkpointer(path, keep=2, model_name="toy")
    iterator = _iterator()
    try:
        return checkpointer.restore(_abstract(), iterator), iterator
    finally:
        checkpointer.close()


def test_trainer_checkpoints_survive_503s_and_dropped_connections(gcs):
    path = "gs://test-bucket/trainer-faults"
    faults = [{"kind": "503", "count": 2, "skip": 1}, {"kind": "drop", "count": 2, "skip": 1}]
    plans = _save_two_steps(gcs, path, faults)
    assert [p.injected for p in plans] == [2, 2], "the proxy did not disturb the saves"
    state, iterator = _restore(path)
    _assert_is_step(state, iterator, step=2, batches_read=3)


def test_trainer_save_survives_an_emulator_restart(gcs):
    path = "gs://test-bucket/trainer-restart"
    first_pid = gcs.emulator.process.pid
    # The 4th upload request of the save of step 2 restarts the emulator (down for 1 s).
    faults = [{"count": 0}, {"kind": "restart", "count": 1, "skip": 3, "down_s": 1.0}]
    plans = _save_two_steps(gcs, path, faults)
    assert [p.injected for p in plans] == [0, 1]
    # Mid-save: uploads of step 2 came after the lost one (retries and the rest of the save).
    assert plans[1].seen > plans[1].skip + 1, plans[1]
    assert gcs.emulator.restarts == 1 and gcs.emulator.process.pid != first_pid
    state, iterator = _restore(path)  # from the new emulator process
    _assert_is_step(state, iterator, step=2, batches_read=3)


def test_uncommitted_step_on_a_bucket_is_reported_not_deleted(gcs, caplog):
    from google.cloud import storage

    path = "gs://test-bucket/trainer-partial"
    _save_two_steps(gcs, path)
    bucket = storage.Client(project="test").bucket("test-bucket")
    markers = [b.name for b in bucket.list_blobs(prefix="trainer-partial/2/")]
    markers = [name for name in markers if name.endswith(COMMIT_MARKER)]
    assert markers, "no commit marker on gs://: the check below would be vacuous"
    for name in markers:
        bucket.blob(name).delete()
    with caplog.at_level(logging.WARNING, logger="nnx_train.checkpointing"):
        state, iterator = _restore(path)
    assert f"Checkpoint {path}/2 has no {COMMIT_MARKER}: its upload never completed" in (
        caplog.text
    )
    _assert_is_step(state, iterator, step=1, batches_read=1)
    left = [b.name for b in bucket.list_blobs(prefix="trainer-partial/2")]
    assert len(left) > 5, left  # the step's files are still there
    # The resumed run reaches step 2 again: its save replaces the unfinished upload.
    checkpointer = Checkpointer(path, keep=2, model_name="toy")
    iterator = _iterator()
    for _ in range(3):
        next(iterator)
    checkpointer.save(_state(2), iterator)
    checkpointer.close()
    state, iterator = _restore(path)
    _assert_is_step(state, iterator, step=2, batches_read=3)


def _full_size_state() -> TrainState:
    """Four (4096, 1024) float32 arrays of normal noise (16 MiB each, barely compressible,
    so the uploads stay large) in the trainer's state layout."""
    sharded = NamedSharding(_mesh(), PartitionSpec("data"))
    rows = FULL_SIZE_MIB * 2**20 // 4 // 4 // 1024
    keys = jax.random.split(jax.random.key(7), 4)
    w, v, mu, ema = (
        jax.device_put(jax.random.normal(k, (rows, 1024), jax.numpy.float32), sharded) for k in keys
    )
    return TrainState(
        step=scalar(1),
        params={"w": w, "v": v},
        rest={},
        opt_state={"mu": {"w": mu}},
        ema={"ema_0.99": {"w": ema}},
        key=jax.random.key_data(jax.random.key(1)),
        num_nonfinite=scalar(0),
    )


def test_full_size_checkpoint_on_a_bucket_restores_exactly(gcs):
    from google.cloud import storage

    path, state = "gs://test-bucket/trainer-full-size", _full_size_state()
    checkpointer = Checkpointer(path, keep=1, model_name="toy")
    iterator = _iterator()
    next(iterator)
    checkpointer.save(state, iterator)
    checkpointer.close()
    sizes = [
        b.size
        for b in storage.Client(project="test").list_blobs("test-bucket", prefix="trainer-full")
    ]
    # zstd takes ~8% off normal float32 (measured 61.8 MB of 67.1 MB); the biggest upload was
    # 46 MB in one request. The bars: most of the bytes and at least one 16 MiB object.
    assert sum(sizes) > 0.8 * FULL_SIZE_MIB * 2**20 and max(sizes) >= 16 * 2**20, sizes

    checkpointer = Checkpointer(path, keep=1, model_name="toy")
    fresh = _iterator()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    try:
        restored = checkpointer.restore(abstract, fresh)
    finally:
        checkpointer.close()
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(next(fresh)["x"], next(iterator)["x"])
