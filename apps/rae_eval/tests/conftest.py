"""Shared fixtures of the rae_eval tests; 8 fake CPU devices and cheap compiles
(``nnx_nets.testing``), so that the suite passes alone."""

import importlib.util
import os
import pathlib

# OpenBLAS threads spinning against XLA (and other test processes) on 2 cores made one
# 2048 x 2048 eigh (each Frechet distance has two) 6x slower; numpy reads it at its first
# import (next import).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()

import pytest  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _load_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"rae_eval_config_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


@pytest.fixture(scope="session")
def load_config():
    """``load_config(name, variant)`` -> ``get_config(variant)`` of ``configs/<name>.py``."""
    return _load_config
