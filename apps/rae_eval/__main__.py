"""``uv run apps/rae_eval --config apps/rae_eval/configs/<name>.py[:variant] --workdir runs/x``.

Flags: ``--config`` (a Python config file with ``get_config(variant)``; override any key with
``--config.a.b=value``) and ``--workdir`` (outputs; rerunning with the same workdir resumes).
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

# Running the folder directly (``python apps/rae_eval``) must find the package without an install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "src"))

from rae_eval.run import run  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory; reused to resume.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    results = run(_CONFIG.value, _WORKDIR.value)
    metrics = results["metrics"]
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{results['task']}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    print(f"results in {pathlib.Path(_WORKDIR.value) / ('results_' + results['task'] + '.json')}")


if __name__ == "__main__":
    app.run(main)
