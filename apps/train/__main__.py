"""``uv run apps/train``: trains the embedded digits default, or ``--config <recipe>``.

Python runs this file with ``apps/train`` on ``sys.path``; the trainer itself is the
``nnx_train`` package (``apps/train/src/nnx_train``), installed in the workspace.
"""

import os
import sys

# XLA's C++ logging (the "Very slow compile" / constant-folding alarms of
# slow_operation_alarm.cc) reads TF_CPP_MIN_LOG_LEVEL once, when jaxlib loads: it must be set
# before the first jax import (nnx_train imports jax), so here rather than in
# `nnx_train.console`. 3 keeps fatal errors only; `--verbose` and a value the user set win.
if "--verbose" not in sys.argv[1:]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from nnx_train.cli import main  # noqa: E402

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "digits.py")

if __name__ == "__main__":
    sys.exit(main(default_config=DEFAULT_CONFIG))
