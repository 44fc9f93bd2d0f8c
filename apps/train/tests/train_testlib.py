"""Helpers shared by the trainer's tests (imported by name: this folder is in pytest's
``pythonpath``)."""

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
RECIPES = (
    "sit_b2",
    "sit_b2_logitnormal",
    "sit_xl2",
    "dit_xl2",
    "repa_xl2",
    "lightningdit_xl2",
    "meanflow_b2",
    "meanflow_xl2",
    "edm2",
    "edm_imagenet64",
    "edm_digits",
    "rae_stage2",
    "rae_stage1",
)


def config_path(name: str) -> str:
    """Path of ``apps/train/configs/<name>.py``."""
    return os.path.join(CONFIG_DIR, f"{name}.py")


def load(name: str, *overrides: str, arg: str | None = None):
    """The locked config of a config file with ``a.b=value`` overrides."""
    from nnx_train.cli import load_config

    return load_config(config_path(name) + (f":{arg}" if arg else ""), overrides)


def assert_same_states(arrays_a, arrays_b) -> None:
    """Two flattened train states (``[(path, array)]``) are bitwise equal, leaf by leaf, and
    both hold every part that a resume restores (parameters, EMA, optimiser, key, step)."""
    import jax
    import numpy as np

    names = [jax.tree_util.keystr(p) for p, _ in arrays_a]
    assert names == [jax.tree_util.keystr(p) for p, _ in arrays_b]
    for part in ("'params'", "'ema'", "'opt_state'", "'key'", "'step'"):
        assert any(part in n for n in names), part
    for (path, a), (_, b) in zip(arrays_a, arrays_b, strict=True):
        np.testing.assert_array_equal(
            np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path)
        )


def two_process_env(**extra: str) -> dict[str, str]:
    """The environment of a two-process CPU job: 4 fake devices per process (``XLA_FLAGS``
    without its own device count), ``JAX_PLATFORMS=cpu``, then ``extra``."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ["XLA_FLAGS"])
    return {
        **os.environ,
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        **extra,
    }


def start_two_processes(
    args_for: Callable[[int, str], list[str]], env: dict[str, str]
) -> list[subprocess.Popen]:
    """Starts ``python *args_for(process_id, port)`` for process ids 0 and 1, joined through
    one free local port; output (stdout and stderr) is captured as text."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    return [
        subprocess.Popen(
            [sys.executable, *args_for(p, port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in range(2)
    ]


def wait_all(processes: list[subprocess.Popen], timeout_s: float) -> list[tuple[int, str]]:
    """``[(exit status, output)]`` of each process, in order; any process still running
    when this leaves (a timeout) is killed."""
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout_s)
            results.append((process.returncode, output))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results
