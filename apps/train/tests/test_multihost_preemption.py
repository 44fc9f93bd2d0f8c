"""SIGTERM to one process of a two-process run, at three moments: both processes save the
same step and exit 75 each time, and the run, resumed after each, ends bitwise where an
uninterrupted two-process run ends.

Each process (``preemption_worker.py``) runs the trainer's command line, joined to the other
through ``distributed.*`` (2 processes x 4 CPU devices, FSDP over all 8: the state spans
both processes, so every save is a collective one). The first pair of processes trains the
uninterrupted reference, then the interrupted run, in which only process 1 receives SIGTERM
(after step 3). JAX's preemption service (`jax.distributed`) catches the signal there, and
`multihost_utils.reached_preemption_sync_point` turns True on both processes at the same
step, where the trainer saves and raises `Preempted` (``nnx_train.preemption``). The same
run is then resumed three times:

1. process 1 receives SIGTERM while the run is being built (restore, compilation), before
   its first step: both save the first step of that call and exit 75 (the trainer numbers
   the sync points from the first step of each call: with the global step, a notice before
   the loop set the sync point to 1, which a resumed run never reaches);
2. process 1 receives SIGTERM after the last step: both stop before the final evaluation at
   the end-of-loop sync point, with the final checkpoint saved, and exit 75 without
   ``metrics.json`` (before that sync point the notice was not acted on: the evaluation ran);
3. the run finishes (the evaluation only) and exits 0.

CPU and the same two-process programs on both sides: no tolerance.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from preemption_worker import NUM_STEPS
from train_testlib import assert_same_states, start_two_processes, two_process_env, wait_all

from nnx_train.preemption import PREEMPTED_EXIT_STATUS

WORKER = Path(__file__).with_name("preemption_worker.py")
SIGTERM_STEP = 3
TIMEOUT_S = 600  # per pair: a resumed pair took 177 s wall at load average 13 on 2 cores


def _pair(tmp_path: Path, sigterm_at: int) -> list[tuple[int, str]]:
    """Runs both worker processes to their end; ``[(exit status, output)]`` by process id.
    ``sigterm_at``: see ``preemption_worker.py``."""
    env = two_process_env(
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        WANDB_MODE="disabled",
        # Six processes import the same code: compile it to bytecode once, in one place.
        PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    folders = [str(tmp_path / "reference"), str(tmp_path / "chain")]
    processes = start_two_processes(
        lambda p, port: [str(WORKER), str(p), port, *folders, str(sigterm_at)], env
    )
    return wait_all(processes, TIMEOUT_S)


def _summary(output: str) -> str:
    """The last lines of a worker's output without XLA's log lines (the message of a
    failed assertion: the trainer's own lines come first)."""
    lines = [line for line in output.splitlines() if not re.match(r"[IWEF]\d{4} |\s+@ ", line)]
    return "\n".join(lines[-40:])


def _final(workdir: Path):
    """``(step, [(path, array)], data positions)`` of the newest checkpoint, read here onto
    one device (the saved shardings name the two processes' devices)."""
    import jax
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(
        workdir / "checkpoints",
        item_names=("state",),
        item_handlers={"state": ocp.StandardCheckpointHandler()},
    )
    step = manager.latest_step()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        manager.item_metadata(step).state,
    )
    restore = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    state = manager.restore(step, args=restore).state
    manager.close()
    data = [
        (workdir / "checkpoints" / str(step) / "data" / f"process_{p}-of-2.json").read_text()
        for p in range(2)
    ]
    return step, jax.tree_util.tree_flatten_with_path(state)[0], data


def _assert_preempted(results: list[tuple[int, str]], chain: Path, reference_runs: int) -> int:
    """Both processes exited 75 after saving the same step (committed, the newest one);
    returns that step."""
    both = "\n".join(f"process {p}:\n{_summary(output)}" for p, (_, output) in enumerate(results))
    assert [status for status, _ in results] == [PREEMPTED_EXIT_STATUS] * 2, both
    stopped = []
    for _, output in results:
        assert output.count("status=0") == reference_runs, _summary(output)
        assert "Traceback" not in output, _summary(output)
        found = re.findall(
            r"preempted \(SIGTERM\): stopped at step (\d+) with the checkpoint", output
        )
        assert len(found) == 1, _summary(output)
        stopped.append(int(found[0]))
    assert stopped[0] == stopped[1], stopped
    checkpoints = chain / "checkpoints"
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    assert steps[-1] == stopped[0], steps
    assert (checkpoints / str(stopped[0]) / "commit_success.txt").is_file()
    assert not (chain / "metrics.json").exists() and not (chain / "train.lock").exists()
    return stopped[0]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sigterm_on_one_process_saves_the_same_step_and_resumes_bitwise(tmp_path):

    chain = tmp_path / "chain"
    # The reference, then the interrupted run (SIGTERM to process 1 only, after step 3): both
    # save the same step, after the signal and before the end.
    stopped = _assert_preempted(_pair(tmp_path, SIGTERM_STEP), chain, reference_runs=1)
    assert SIGTERM_STEP < stopped < NUM_STEPS, stopped

    # 1. Resumed, SIGTERM to process 1 before the first step: the first step is saved.
    early = _pair(tmp_path, -1)
    assert _assert_preempted(early, chain, reference_runs=0) == stopped + 1

    # 2. Resumed, SIGTERM to process 1 after the last step: stopped before the evaluation.
    late = _pair(tmp_path, -2)
    both = "\n".join(f"process {p}:\n{_summary(output)}" for p, (_, output) in enumerate(late))
    assert [status for status, _ in late] == [PREEMPTED_EXIT_STATUS] * 2, both
    for _, output in late:
        assert "preempted (SIGTERM): stopped with the checkpoint saved" in output, both
        assert "Traceback" not in output, _summary(output)
    assert f"steps {stopped + 1}->{NUM_STEPS}" in late[0][1], _summary(late[0][1])
    assert (chain / "checkpoints" / str(NUM_STEPS) / "commit_success.txt").is_file()
    assert not (chain / "metrics.json").exists() and not (chain / "train.lock").exists()

    # 3. Resumed at the end: nothing left to train; the evaluation runs and the run ends.
    resumed = _pair(tmp_path, 0)
    both = "\n".join(f"process {p}:\n{_summary(output)}" for p, (_, output) in enumerate(resumed))
    assert [status for status, _ in resumed] == [0, 0], both
    assert f"steps {NUM_STEPS}->{NUM_STEPS}" in resumed[0][1], _summary(resumed[0][1])
    assert (chain / "metrics.json").is_file()

    step_a, arrays_a, data_a = _final(tmp_path / "reference")
    step_b, arrays_b, data_b = _final(chain)
    assert step_a == step_b == NUM_STEPS and data_a == data_b
    assert_same_states(arrays_a, arrays_b)
