"""``uv run apps/train``: trains the embedded digits default, or ``--config <recipe>``.

Python runs this file with ``apps/train`` on ``sys.path``; the trainer itself is the
``nnx_train`` package (``apps/train/src/nnx_train``), installed in the workspace.
"""

import os
import sys

from nnx_train.cli import main

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "digits.py")

if __name__ == "__main__":
    sys.exit(main(default_config=DEFAULT_CONFIG))
