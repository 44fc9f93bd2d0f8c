"""The issue's few-step proofs at the configs' default size, from the digits default teacher.

Marker ``proof`` (CI part 1 only; part 2 deselects it). One session fixture trains the digits
default exactly as ``uv run apps/train`` does; from it:

- DMD2 (configs/dmd2_digits.py): a one-step generator reaches generated-class accuracy
  >= 0.90 with the default run's classifier;
- sCD (configs/scd_digits.py): a 2-step student reaches >= 0.90;
- sCT from scratch (configs/sct_digits.py): its 2-step samples beat its 1-step samples on the
  classifier-feature Frechet distance (one run: ``eval.sampler_steps = (1, 2)``).

Every run is the app's command line in a subprocess (``python apps/train ...``, as
``uv run apps/train``), with the test suite's XLA flags removed: the suites compile with LLVM
-O0 on 8 fake devices (`nnx_nets.testing.configure_cpu_tests`), which would make these
minutes-long trainings several times slower than the command a user runs. Each distillation's
wall time is the run's own ``wall_seconds`` (``train()`` from its start to metrics.json:
setup, compilation, training and the final evaluation; without the interpreter's start-up),
and must stay under the issue's 5 minutes on 2 cores. The subprocess's CPU time is printed
next to it (``-rA``): on a machine shared with other jobs the wall time grows, the CPU time
does not.
"""

import json
import os
import pathlib
import resource
import subprocess
import sys

import pytest
from train_testlib import config_path

pytestmark = [pytest.mark.proof, pytest.mark.slow]

APP = pathlib.Path(__file__).resolve().parents[1]  # apps/train, as `uv run apps/train` runs it
WALL_LIMIT_S = 300.0  # the "each distillation run takes <= 5 minutes on 2 cores"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _app(workdir: pathlib.Path, *args: str) -> tuple[dict, str]:
    """Runs the app's command line; returns ``(metrics.json, stdout)``; metrics.json gains
    ``cpu_seconds``, the subprocess's CPU time (load-independent, next to the wall time)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "XLA_FLAGS" and not k.startswith(("COV_CORE_", "COVERAGE_"))
    }
    env.update({"JAX_PLATFORMS": "cpu", "WANDB_MODE": "disabled"})
    command = [sys.executable, str(APP), f"--workdir={workdir}", *args]
    command.append("--config.logging.progress_bar=False")
    cpu = _cpu_seconds()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    return {**metrics, "cpu_seconds": _cpu_seconds() - cpu}, done.stdout


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> pathlib.Path:
    """The digits default run (`uv run apps/train`), trained once for the three proofs."""
    workdir = tmp_path_factory.mktemp("digits_teacher")
    metrics, _ = _app(workdir)
    print(
        f"digits teacher: wall {metrics['wall_seconds']:.0f} s, CPU {metrics['cpu_seconds']:.0f} s"
    )
    assert metrics["finished"] and metrics["step"] == 1200
    return workdir


def _distil(
    name: str, tmp_path: pathlib.Path, teacher: pathlib.Path | None, *, timed: bool = True
) -> tuple[dict, str]:
    args = [f"--config={config_path(name)}"]
    if teacher is not None:
        args.append(f"--config.objective.teacher_workdir={teacher}")
    metrics, out = _app(tmp_path / name, *args)
    print(f"{name}: {json.dumps(metrics, default=str)}")  # shown by -rA / on failure
    assert metrics["finished"]
    if timed:
        assert metrics["wall_seconds"] < WALL_LIMIT_S, (
            metrics["wall_seconds"],
            metrics["cpu_seconds"],
        )
    return metrics, out


def test_dmd2_one_step_generator_reaches_090(digits_teacher, tmp_path):
    metrics, out = _distil("dmd2_digits", tmp_path, digits_teacher)
    assert metrics["nfe"] == 1 and metrics["teacher_nfe"] == 19
    assert metrics["generated_class_accuracy"] >= 0.90
    # Accuracy alone does not show the distillation: the generator before training (the
    # teacher's one-step prediction, a blurred class mean) already scores 0.978, with FD 100.2
    # (measured, 1 training step). 100 steps bring the FD to 50.3; 75 leaves room for XLA's
    # float differences between machines while still failing an undistilled generator.
    assert metrics["classifier_frechet_distance"] < 75.0
    # The command's last line prints the student's figures next to the teacher's.
    last = out.strip().splitlines()[-1]
    assert "generated_class_accuracy=" in last and "teacher_generated_class_accuracy=" in last
    assert "nfe=1" in last and "teacher_nfe=19" in last


def test_scd_two_step_student_reaches_090(digits_teacher, tmp_path):
    metrics, out = _distil("scd_digits", tmp_path, digits_teacher)
    assert metrics["nfe"] == 2 and metrics["teacher_nfe"] == 19
    assert metrics["generated_class_accuracy_steps2"] >= 0.90
    # As for DMD2, the FD shows the distillation: before training the teacher as a 2-step
    # consistency function scores 0.968 with FD 50.4 (measured, 1 training step); 100 steps
    # reach FD 31.9. 40 fails the undistilled student with room for float differences.
    assert metrics["classifier_frechet_distance_steps2"] < 40.0
    last = out.strip().splitlines()[-1]
    assert "generated_class_accuracy_steps2=" in last and "teacher_nfe=19" in last


def test_sct_two_steps_beat_one_step(tmp_path):
    # sCT trains from scratch (no teacher, not a distillation): the issue bounds the time of
    # the distillation runs only, so this run's wall time is printed, not asserted.
    metrics, _ = _distil("sct_digits", tmp_path, None, timed=False)
    assert metrics["nfe"] == 2
    two, one = (metrics[f"classifier_frechet_distance_steps{n}"] for n in (2, 1))
    assert two < one, (two, one)
