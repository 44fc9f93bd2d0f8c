"""Shared by the nnx-weightconv tests: ``tools/convert_checkpoint.py`` loaded as a module
(fixture ``tool``), 8 fake CPU devices and cheap compiles (``nnx_nets.testing``).

``weightconv_testlib`` is importable because the pytest configuration (this package's
``pyproject.toml``, and the root's) lists this folder in ``pythonpath``."""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("EPATH_USE_TF", "false")  # orbax's paths: never probe for TensorFlow

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()

import pytest  # noqa: E402

TOOL = Path(__file__).resolve().parents[3] / "tools" / "convert_checkpoint.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
