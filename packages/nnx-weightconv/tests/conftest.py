"""Shared by the nnx-weightconv tests: ``tools/convert_checkpoint.py`` loaded as a module
(fixture ``tool``), and this folder on sys.path for ``weightconv_testlib``."""

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

TOOL = Path(__file__).resolve().parents[3] / "tools" / "convert_checkpoint.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
