"""Checkpoints on gs:// against a local GCS emulator, with injected faults.

The fixture starts ``gcp-storage-emulator`` on loopback behind a fault-injecting proxy
(tests/gcs_emulator.py). Transient faults (503 responses, dropped connections) must be
retried and give a checkpoint that restores exactly; a save that cannot complete must
raise and must never leave a step that the manager lists as valid.
"""

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

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


def _state(step: int) -> dict:
    return {"params": {"w": jnp.arange(16.0).reshape(4, 4) + step}, "step": jnp.int32(step)}


def _abstract() -> dict:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0))


def _manager(path: str) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=2))


def test_save_restore_and_keep_n(gcs):
    manager = _manager("gs://test-bucket/plain")
    for step in range(3):
        manager.save(step, args=ocp.args.StandardSave(_state(step)))
    manager.wait_until_finished()
    assert manager.all_steps() == [1, 2]
    restored = manager.restore(2, args=ocp.args.StandardRestore(_abstract()))
    np.testing.assert_array_equal(restored["params"]["w"], _state(2)["params"]["w"])
    manager.close()


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_transient_faults_are_retried(gcs, kind):
    path = f"gs://test-bucket/transient-{kind}"
    manager = _manager(path)
    plan = gcs.arm(kind=kind, count=2, skip=1)
    manager.save(5, args=ocp.args.StandardSave(_state(5)))
    manager.wait_until_finished()
    gcs.arm(count=0)
    assert plan.injected == 2, "the proxy did not disturb the upload"
    manager.close()
    reopened = _manager(path)
    assert reopened.all_steps() == [5]
    restored = reopened.restore(5, args=ocp.args.StandardRestore(_abstract()))
    np.testing.assert_array_equal(restored["params"]["w"], _state(5)["params"]["w"])
    reopened.close()


def test_unfinished_checkpoint_is_not_valid(gcs):
    """A step whose upload never completed (no commit marker) is not listed or restored."""
    from google.cloud import storage

    path = "gs://test-bucket/partial"
    manager = _manager(path)
    for step in (1, 2):
        manager.save(step, args=ocp.args.StandardSave(_state(step)))
    manager.wait_until_finished()
    manager.close()
    bucket = storage.Client(project="test").bucket("test-bucket")
    markers = [b.name for b in bucket.list_blobs(prefix="partial/2/") if "commit_success" in b.name]
    assert markers, (
        "orbax wrote no commit marker on gs://; the validity check below would be vacuous"
    )
    for name in markers:
        bucket.blob(name).delete()
    reopened = _manager(path)
    assert reopened.all_steps() == [1]
    assert reopened.latest_step() == 1
    reopened.close()
