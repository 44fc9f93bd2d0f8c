"""XLA's C++ alarms (``slow_operation_alarm.cc``) are hidden by default, shown with --verbose.

The "Very slow compile" alarm fires after a compile of more than 2 minutes (a fixed
threshold in XLA's ``SlowCompilationAlarm``, no flag changes it), too slow for a test. Its
sibling in the same file, "Constant folding an instruction is taking > 1s", goes through the
same C++ logger at the same level (ERROR), so it stands in for it: the config file below
sorts a 9,000-element constant, which XLA constant-folds in its HLO evaluator (about 2 s on
this machine, 1.3 s for 6,000 elements). The config runs inside the app (``get_config`` is
called after the log level is set, before any training) and then stops it with a one-line
error, so each run costs a jax import plus the fold.

Both ways in: ``python apps/train`` (the entry script sets ``TF_CPP_MIN_LOG_LEVEL`` before
jaxlib loads) and ``python -m nnx_train`` (jax is loaded before any of the app's code runs, so
only `nnx_train.console.quiet_third_party`'s call into the loaded library can hide it).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

APP = str(pathlib.Path(__file__).resolve().parents[1])

CONFIG = """
import numpy as np
import jax
import jax.numpy as jnp


def get_config(arg=None):
    values = np.random.RandomState(0).rand(9000).astype(np.float32)
    jax.jit(lambda: jnp.sort(values)[::7].sum())()
    print("constant folded", flush=True)
    return None
"""

ALARM = "slow_operation_alarm.cc"


def test_xla_cpp_alarm_is_hidden_by_default_and_shown_with_verbose(tmp_path):
    config = tmp_path / "fold_a_sort.py"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [f"--config={config}", f"--workdir={tmp_path / 'w'}"]
    cases = {
        "apps/train": [sys.executable, APP, *args],
        "python -m nnx_train": [sys.executable, "-m", "nnx_train", *args],
        "apps/train --verbose": [sys.executable, APP, *args, "--verbose"],
    }
    runs = {
        case: subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for case, argv in cases.items()
    }
    outputs = {case: run.communicate(timeout=300)[0] for case, run in runs.items()}
    for case, output in outputs.items():
        # The fold ran in every case (so the alarm had its chance), and the app then stopped.
        assert "constant folded" in output, (case, output)
        assert runs[case].returncode == 2, (case, output)
    verbose = outputs["apps/train --verbose"]
    assert ALARM in verbose and "Constant folding an instruction is taking" in verbose, verbose
    for case in ("apps/train", "python -m nnx_train"):
        assert ALARM not in outputs[case], (case, outputs[case])
        assert outputs[case].splitlines()[0] == "constant folded", (case, outputs[case])
