"""The trainer's `Checkpointer` on gs:// against the local GCS emulator, with faults.

Same emulator and fault proxy as ``tests/test_gcs_checkpoints.py`` (tests/gcs_emulator.py),
but the trainer's own checkpointer: a `TrainState` sharded over the 8 fake devices, the
data-iterator position and the manifest with its fingerprints (the toy state of
``apps/train/tests/test_checkpoint_faults.py``). 503 answers and dropped connections during
the saves must be retried and resume exactly; a step whose upload never completed is
reported by name when the checkpointer opens the bucket and is not deleted.
"""

import importlib.util
import logging
import pathlib
import sys

import pytest
from test_checkpoint_faults import _abstract, _assert_is_step, _iterator, _state

from nnx_train.checkpointing import COMMIT_MARKER, Checkpointer

_spec = importlib.util.spec_from_file_location(
    "gcs_emulator", pathlib.Path(__file__).with_name("gcs_emulator.py")
)
gcs_emulator = importlib.util.module_from_spec(_spec)
sys.modules["gcs_emulator"] = gcs_emulator
_spec.loader.exec_module(gcs_emulator)


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator.gcs_emulator() as proxy:
        yield proxy


def _save_two_steps(gcs, path: str, faults=None) -> list[int]:
    """Steps 1 and 2 (1 and 3 batches read); ``faults[i]``: the plan armed for save i."""
    checkpointer = Checkpointer(path, keep=2, model_name="toy")
    iterator = _iterator()
    injected = []
    for step, reads in ((1, 1), (2, 2)):
        for _ in range(reads):
            next(iterator)
        plan = gcs.arm(**faults[step - 1]) if faults else None
        checkpointer.save(_state(step), iterator)
        checkpointer.wait()
        gcs.arm(count=0)
        injected.append(0 if plan is None else plan.injected)
    checkpointer.close()
    return injected


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
    assert _save_two_steps(gcs, path, faults) == [2, 2], "the proxy did not disturb the saves"
    state, iterator = _restore(path)
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
