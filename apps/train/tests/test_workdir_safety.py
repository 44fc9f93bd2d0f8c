"""One run per workdir (the lock), torn metrics lines, files replaced atomically.

Unit-level: the lock is taken by `nnx_train.train.train` before anything is built, so a
refused run fails before compiling anything and these tests take about a second.
"""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest
from train_testlib import load

from nnx_train.workdir_lock import LOCK_NAME, WorkdirLock, WorkdirLockedError


def _holder(pid: int, host: str | None = None) -> str:
    return json.dumps({"host": host or socket.gethostname(), "pid": pid, "started": 0})


@pytest.fixture
def other_process():
    """A live process of this host that is not this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process
    process.kill()
    process.wait()


def test_second_run_on_a_workdir_is_refused_naming_the_holder(tmp_path, other_process):
    from nnx_train.train import train

    (tmp_path / LOCK_NAME).write_text(_holder(other_process.pid))
    config = load("sit_b2", arg="tiny")
    with pytest.raises(WorkdirLockedError) as info:
        train(config, str(tmp_path))
    message = str(info.value)
    assert message == (
        f"The workdir {tmp_path} is in use by another run (pid {other_process.pid} on host "
        f"{socket.gethostname()!r}, started 1970-01-01 00:00:00 UTC); wait for it to end or "
        "use another --workdir."
    )
    # Refused before anything was written or cleaned up; the holder's lock is untouched.
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == other_process.pid


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(_holder(1, host="some-other-host"))
    with pytest.raises(WorkdirLockedError, match="on another host .* remove .* by hand"):
        WorkdirLock(str(tmp_path)).acquire()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names no process now
    (tmp_path / LOCK_NAME).write_text(_holder(gone.pid))
    lock = WorkdirLock(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="nnx_train.workdir_lock"):
        lock.acquire()
    assert f"pid {gone.pid}" in caplog.text and "gone" in caplog.text
    held = json.loads((tmp_path / LOCK_NAME).read_text())
    assert held["pid"] == os.getpid() and abs(held["started"] - time.time()) < 600
    lock.release()  # (a finished or preempted run: apps/train/tests/test_preemption.py)
    assert not (tmp_path / LOCK_NAME).exists()


def test_torn_last_metrics_line_is_skipped_with_a_warning(tmp_path, caplog):
    from nnx_train.metrics_log import MetricsLogger, read_jsonl

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="nnx_train.metrics_log"):
        assert read_jsonl(str(path)) == [{"step": 1, "loss": 0.5}]
    assert "Skipping line 2" in caplog.text
    # The next run appends on a line of its own: its records read back whole.
    logger = MetricsLogger(str(tmp_path), config={}, project="p", mode="disabled", run_name="r")
    logger.log(3, {"loss": 0.25})
    assert read_jsonl(str(path)) == [{"step": 1, "loss": 0.5}, {"step": 3, "loss": 0.25}]


def test_a_picture_that_fails_mid_write_leaves_the_previous_one(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    from nnx_train.pictures import save_image_grid

    path = str(tmp_path / "samples.png")
    save_image_grid(np.zeros((2, 4, 4, 3), np.uint8), path)
    before = (tmp_path / "samples.png").read_bytes()

    def torn_save(self, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"\x89PNG")  # a few bytes, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", torn_save)
    with pytest.raises(OSError, match="No space"):
        save_image_grid(np.full((2, 4, 4, 3), 255, np.uint8), path)
    assert (tmp_path / "samples.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]


def test_nan_learning_rate_is_caught_by_the_step_guard():
    """Finite loss and gradients, NaN learning rate: the step is not applied and is counted."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from nnx_train.ema import init_ema
    from nnx_train.state import TrainState, scalar
    from nnx_train.step import make_train_step

    graphdef, params, rest = nnx.split(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), nnx.Param, ...)
    tx = optax.sgd(float("nan"))
    state = TrainState(
        step=scalar(0),
        params=params,
        rest=rest,
        opt_state=tx.init(params),
        ema=init_ema(params, (0.9,)),
        key=jax.random.key_data(jax.random.key(0)),
        num_nonfinite=scalar(0),
    )
    step = make_train_step(
        graphdef=graphdef,
        frozen_graphdef=None,
        loss_fn=lambda model, frozen, batch, key: (jnp.sum(model(batch["x"]) ** 2, -1), {}),
        optimizer=tx,
        schedule=optax.constant_schedule(float("nan")),
        ema_decays=(0.9,),
    )
    before = jax.tree.map(np.asarray, state.params)
    new_state, metrics = jax.jit(step)(state, None, {"x": jnp.ones((4, 3))})
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert int(new_state.num_nonfinite) == 1 and float(metrics["nonfinite"]) == 1.0
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(np.asarray(a), b)  # kept exactly: not applied
