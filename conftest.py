"""Root pytest configuration, loaded when pytest runs from the repository root.

Each suite's own ``conftest.py`` sets up what that suite needs through
``nnx_nets.testing.configure_cpu_tests`` (8 fake CPU devices, cheap XLA:CPU compiles, quiet
threads), so that ``cd packages/<name> && uv run --group test pytest`` passes alone. This file
does the same for the root's cross-package suite (``tests/``) and, being loaded first, before
any suite imports numpy: numpy reads ``OPENBLAS_NUM_THREADS`` at its first import.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("EPATH_USE_TF", "false")

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()
