"""``uv run apps/rae_eval --config apps/rae_eval/configs/<name>.py[:variant] --workdir runs/x``.

The command line is `rae_eval.cli` (``--help`` lists the flags, config files and their
``:arguments``; the same shape as ``uv run apps/train``). Without flags it runs the embedded
default, ``configs/tiny.py`` (a tiny RAE with RANDOM weights: the whole generation pipeline
on the CPU, no files needed) into ``runs/rae_eval_tiny``.
"""

import os
import pathlib
import sys

# XLA's C++ log level is read once, when jaxlib loads (rae_eval imports jax): set it before
# that import; `--verbose` and a value the user set win.
if "--verbose" not in sys.argv[1:]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Running the folder directly (``python apps/rae_eval``) must find the package without an install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "src"))

from rae_eval.cli import main  # noqa: E402

DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "tiny.py")

if __name__ == "__main__":
    sys.exit(main(default_config=DEFAULT_CONFIG))
