"""XLA's C++ alarms (``slow_operation_alarm.cc``) are hidden by default, shown with --verbose.

The "Very slow compile" alarm fires after a compile of more than 2 minutes (a fixed
threshold in XLA's ``SlowCompilationAlarm``, no flag changes it), too slow for a test. Its
sibling in the same file, "Constant folding an instruction is taking > 1s", goes through the
same C++ logger at the same level (ERROR), so it stands in for it: the config file below
sorts a 9,000-element constant, which XLA constant-folds in its HLO evaluator (about 2 s on
this machine, 1.3 s for 6,000 elements). The config runs inside the app (``get_config`` is
called after ``apps/train/__main__.py`` has set the C++ log level, before any training) and
then stops it with a one-line error, so each run costs a jax import plus the fold.
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
    runs = {
        flags: subprocess.Popen(
            [sys.executable, APP, f"--config={config}", f"--workdir={tmp_path / 'w'}", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for flags in ((), ("--verbose",))
    }
    outputs = {flags: run.communicate(timeout=300)[0] for flags, run in runs.items()}
    for flags, output in outputs.items():
        # The fold ran in both (so the alarm had its chance), and the app then stopped.
        assert "constant folded" in output, (flags, output)
        assert runs[flags].returncode == 2, (flags, output)
    assert ALARM in outputs[("--verbose",)], outputs[("--verbose",)]
    assert "Constant folding an instruction is taking" in outputs[("--verbose",)]
    assert ALARM not in outputs[()], outputs[()]
    assert outputs[()].splitlines()[0] == "constant folded", outputs[()]
