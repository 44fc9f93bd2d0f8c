"""``python -m nnx_train``: the same command line as ``uv run apps/train`` (`nnx_train.cli`).

The one to start on every host of a TPU pod slice or a SLURM job (see apps/train/README.md,
"Several hosts"); without ``--config`` it trains the embedded digits default.
"""

import sys

from nnx_train.cli import main

if __name__ == "__main__":
    sys.exit(main())
