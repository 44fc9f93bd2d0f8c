"""kill -9 at three points of a training run, resume each: bitwise the uninterrupted result.

One chain of four ``python -m``-style processes (this file run as a script: the trainer's
command line with a *gate*, a pause at a chosen point) trains the tiny SiT-B/2 recipe for 16
steps with a checkpoint every 4 steps, ``checkpoint.keep=1`` and asynchronous saves:

1. killed between checkpoints: step 6 done in memory, step 4 the last finalised checkpoint;
2. killed during the asynchronous save of step 8: its files are in orbax's temporary folder,
   not yet renamed; step 4 must still be on disk although ``keep=1``;
3. killed just after step 8 is finalised (renamed), before anything else happens;
4. resumed to the end.

The gate only pauses (it writes a marker file and sleeps); the test polls for the marker and
for the checkpoint folders, checks what is on disk, then sends SIGKILL. A separate
uninterrupted run gives the reference: the final checkpoints must hold bitwise the same
parameters, EMA, optimiser state, step, RNG key and data-iterator position (CPU,
deterministic: no tolerance).

Speed: the processes share a JAX compilation cache and a bytecode cache in ``tmp_path``, so
only the first one compiles.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from train_testlib import assert_same_states

CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "sit_b2.py"
)
OVERRIDES = (
    "train.num_steps=16",
    "checkpoint.every_steps=4",
    "checkpoint.keep=1",
    "checkpoint.async_save=True",
    "samples.num_images=0",
)
WANDB_SECRET = "wandb0secret0" + "5a7e2c" * 5
GCS_SECRET = "gcs-private-key-3d9f41c8e6"
GATE = "NNX_TRAIN_TEST_GATE"  # "<where>:<step>:<marker file>"
TIMEOUT_S = 240  # generous: one process takes 5-15 s on two busy cores


def _install_gate(spec: str) -> None:
    """Pauses this process forever at one point (it is killed there)."""
    where, step, marker = spec.split(":", 2)
    step = int(step)

    def pause() -> None:
        with open(marker, "w") as handle:
            handle.write(where)
        while True:
            time.sleep(60)

    if where == "after_log":  # the main thread, after the metrics line of `step`
        from nnx_train.metrics_log import MetricsLogger

        original_log = MetricsLogger.log

        def log(self, at_step, metrics):
            original_log(self, at_step, metrics)
            if at_step == step:
                pause()

        MetricsLogger.log = log
        return
    # orbax's save thread, just before / just after the rename of the step folder.
    from orbax.checkpoint._src.path import atomicity

    original_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        if self.get_final().name == str(step) and where == "before_rename":
            pause()
        result = await original_finalize(self)
        if self.get_final().name == str(step) and where == "after_rename":
            pause()
        return result

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


def _start(workdir, tmp_path, gate: str | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"),
        WANDB_MODE="disabled",
        # Credentials in the environment must never reach a file or the output (checked at
        # the end over everything the five processes wrote).
        WANDB_API_KEY=WANDB_SECRET,
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "service_account.json"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop(GATE, None)
    if gate is not None:
        env[GATE] = gate
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        f"--config={CONFIG}:tiny",
        f"--workdir={workdir}",
        *(f"--config.{o}" for o in OVERRIDES),
    ]
    with open(tmp_path / f"{os.path.basename(workdir)}.log", "a") as log:  # the child keeps it
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_until(condition, process: subprocess.Popen, what: str, log_path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(
                f"the run ended (status {process.returncode}) before {what}:\n"
                + log_path.read_text()[-3000:]
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def _committed(checkpoints, step: int) -> bool:
    return (checkpoints / str(step) / "commit_success.txt").is_file()


def _entries(checkpoints) -> list[str]:
    return sorted(p.name for p in checkpoints.iterdir()) if checkpoints.is_dir() else []


def _final(workdir):
    import jax
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state",))
    step = manager.latest_step()
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    manager.close()
    data = (workdir / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text()
    return step, jax.tree_util.tree_flatten_with_path(state)[0], data


def _segment_starts(metrics_path) -> list[int]:
    """First step of each process's run of lines in metrics.jsonl (appended by each)."""
    steps = [json.loads(line)["step"] for line in metrics_path.read_text().splitlines()]
    return [s for i, s in enumerate(steps) if i == 0 or s <= steps[i - 1]]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_kill_at_three_points_and_resume_is_bitwise(tmp_path):

    reference, chain = tmp_path / "reference", tmp_path / "chain"
    checkpoints = chain / "checkpoints"
    (tmp_path / "service_account.json").write_text(
        json.dumps({"type": "service_account", "private_key": GCS_SECRET})
    )

    straight = _start(reference, tmp_path)  # also fills the compilation cache
    assert straight.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "reference.log").read_text()

    # 1. Between checkpoints: step 6 in memory, step 4 finalised.
    marker = tmp_path / "marker1"
    run = _start(chain, tmp_path, f"after_log:6:{marker}")
    _wait_until(
        lambda: marker.exists() and _committed(checkpoints, 4),
        run,
        "step 6",
        tmp_path / "chain.log",
    )
    assert _entries(checkpoints) == ["4"]
    _kill(run)

    # 2. During the asynchronous save of step 8 (resumed from 4): files written to the
    #    temporary folder, not renamed. keep=1, yet step 4 is still complete on disk.
    marker = tmp_path / "marker2"
    run = _start(chain, tmp_path, f"before_rename:8:{marker}")
    _wait_until(marker.exists, run, "the save of step 8", tmp_path / "chain.log")
    entries = _entries(checkpoints)
    assert entries[0] == "4" and _committed(checkpoints, 4), entries
    assert len(entries) == 2 and entries[1].startswith("8.orbax-checkpoint-tmp"), entries
    _kill(run)

    # 3. Just after step 8 is renamed (resumed from 4 again: the temporary folder of 8 is
    #    not a checkpoint). Step 4 is not deleted yet (that follows the rename).
    marker = tmp_path / "marker3"
    run = _start(chain, tmp_path, f"after_rename:8:{marker}")
    _wait_until(marker.exists, run, "the rename of step 8", tmp_path / "chain.log")
    assert _entries(checkpoints) == ["4", "8"] and _committed(checkpoints, 8)
    _kill(run)

    # 4. Resume from 8 to the end.
    run = _start(chain, tmp_path)
    assert run.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "chain.log").read_text()[-3000:]
    assert json.loads((chain / "metrics.json").read_text())["resumed_from"] == 8
    # Processes started at steps 1, 5 (from 4), 5 (from 4) and 9 (from 8).
    assert _segment_starts(chain / "metrics.jsonl") == [1, 5, 5, 9]
    assert _segment_starts(reference / "metrics.jsonl") == [1]

    step_a, arrays_a, data_a = _final(reference)
    step_b, arrays_b, data_b = _final(chain)
    assert step_a == step_b == 16
    assert data_a == data_b
    assert_same_states(arrays_a, arrays_b)

    # No credential in any run file, checkpoint or captured output (*.log) of the processes.
    written = [p for d in (reference, chain) for p in d.rglob("*") if p.is_file()]
    written += list(tmp_path.glob("*.log"))
    assert len(written) > 20
    for path in written:
        data = path.read_bytes()
        assert WANDB_SECRET.encode() not in data and GCS_SECRET.encode() not in data, path


if __name__ == "__main__":  # a gated trainer process of the test above
    if os.environ.get(GATE):
        _install_gate(os.environ[GATE])
    from nnx_train.cli import main

    sys.exit(main(default_config=CONFIG))
