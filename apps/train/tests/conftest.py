"""The trainer's suite: 8 fake CPU devices, cheap compiles, quiet threads, no wandb uploads.

``train_testlib`` and ``readers_testlib`` are importable because the pytest configuration
(this app's ``pyproject.toml``, and the root's) lists this folder in ``pythonpath``.
"""

import os

# numpy reads it at its first import (next import): FID's eigh on one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("EPATH_USE_TF", "false")  # orbax's paths: never probe for TensorFlow

from nnx_nets.testing import configure_cpu_tests  # noqa: E402

configure_cpu_tests()
