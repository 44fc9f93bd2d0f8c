"""SIGTERM (a preemption notice) at three moments of a run, resume each: bitwise the
uninterrupted result, and exit status 75 every time.

One chain of ``python``-style processes (this file run as a script: the trainer's command
line with a *trigger* that sends SIGTERM to its own process at a chosen point) trains the
tiny SiT-B/2 recipe for 16 steps with a checkpoint every 4 steps, ``checkpoint.keep=1`` and
asynchronous saves:

1. SIGTERM in the main thread after step 6 is logged (between checkpoints): the run saves
   step 6 and exits 75;
2. SIGTERM from orbax's save thread while step 8 is written (before its rename): the run
   finishes that save and saves the step it has reached at the next step boundary (9 to 12:
   the main thread runs on while the save is written), exits 75;
3. SIGTERM while the final step 16 is being saved: the save completes, the final samples and
   evaluation are left for the resumed run, exit 75 without ``metrics.json``.

A separate uninterrupted run is the reference: the final checkpoints hold bitwise the same
parameters, EMA, optimiser state, step, RNG key and data position (CPU, deterministic: no
tolerance). The processes share a JAX compilation cache, so only the first one compiles.
"""

import os
import re
import signal
import sys

import pytest
from test_kill_resume import CONFIG, TIMEOUT_S, _committed, _final
from train_testlib import assert_same_states

OVERRIDES = (
    "train.num_steps=16",
    "checkpoint.every_steps=4",
    "checkpoint.keep=1",
    "checkpoint.async_save=True",
    "samples.num_images=0",
)
TRIGGER = "NNX_TRAIN_TEST_SIGTERM"  # "<where>:<step>"


def _install_trigger(spec: str) -> None:
    """Sends SIGTERM to this process once, at one point; the run goes on as it would."""
    where, step = spec.split(":")
    step = int(step)

    def term() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    if where == "after_log":  # the main thread, after the metrics line of `step`
        from nnx_train.metrics_log import MetricsLogger

        original_log = MetricsLogger.log

        def log(self, at_step, metrics):
            original_log(self, at_step, metrics)
            if at_step == step:
                term()

        MetricsLogger.log = log
        return
    from orbax.checkpoint._src.path import atomicity  # orbax's save thread

    original_finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self):
        if self.get_final().name == str(step):
            term()
        return await original_finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


def _run(workdir, tmp_path, trigger: str | None = None) -> tuple[int, str]:
    """Runs one trainer process to its end; ``(exit status, its output)``."""
    import subprocess

    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPYCACHEPREFIX=str(tmp_path / "pycache"),
        WANDB_MODE="disabled",
    )
    env.pop(TRIGGER, None)
    if trigger is not None:
        env[TRIGGER] = trigger
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        f"--config={CONFIG}:tiny",
        f"--workdir={workdir}",
        *(f"--config.{o}" for o in OVERRIDES),
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    return done.returncode, done.stdout + done.stderr


def _latest(checkpoints) -> int:
    return max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigterm_at_three_moments_saves_and_resumes_bitwise(tmp_path):

    from nnx_train.preemption import PREEMPTED_EXIT_STATUS

    reference, chain = tmp_path / "reference", tmp_path / "chain"
    checkpoints = chain / "checkpoints"
    status, output = _run(reference, tmp_path)  # also fills the compilation cache
    assert status == 0, output

    # 1. Between checkpoints (step 4 on disk): step 6 is saved before leaving.
    status, output = _run(chain, tmp_path, "after_log:6")
    assert status == PREEMPTED_EXIT_STATUS, output
    assert "preempted (SIGTERM): stopped at step 6 with the checkpoint saved" in output
    assert "Traceback" not in output
    assert _committed(checkpoints, 6) and _latest(checkpoints) == 6
    assert not (chain / "metrics.json").exists() and not (chain / "train.lock").exists()

    # 2. During the asynchronous save of step 8: that save completes, then the step reached
    #    at the next boundary is saved too.
    status, output = _run(chain, tmp_path, "before_rename:8")
    assert status == PREEMPTED_EXIT_STATUS, output
    stopped = int(re.search(r"stopped at step (\d+)", output).group(1))
    assert 8 < stopped <= 12 and _committed(checkpoints, stopped)
    assert _latest(checkpoints) == stopped

    # 3. During the final save: it completes; evaluation is left to the resumed run.
    status, output = _run(chain, tmp_path, "before_rename:16")
    assert status == PREEMPTED_EXIT_STATUS, output
    assert "preempted (SIGTERM): stopped" in output and "Traceback" not in output
    assert _committed(checkpoints, 16) and not (chain / "metrics.json").exists()
    # A finished run (the reference) and a preempted one both release the workdir lock.
    assert not (reference / "train.lock").exists() and not (chain / "train.lock").exists()

    step_a, arrays_a, data_a = _final(reference)
    step_b, arrays_b, data_b = _final(chain)
    assert step_a == step_b == 16 and data_a == data_b
    assert_same_states(arrays_a, arrays_b)


if __name__ == "__main__":  # a trainer process of the test above
    if os.environ.get(TRIGGER):
        _install_trigger(os.environ[TRIGGER])
    from nnx_train.cli import main

    sys.exit(main(default_config=CONFIG))
