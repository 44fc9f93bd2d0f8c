"""``uv run apps/rae_eval --config apps/rae_eval/configs/<name>.py[:variant] --workdir runs/x``.

Flags: ``--config`` (a Python config file with ``get_config(variant)``; override any key with
``--config.a.b=value``) and ``--workdir`` (outputs; rerunning with the same workdir resumes).
Without flags it runs the embedded default, ``configs/tiny.py`` (a tiny RAE with RANDOM
weights: the whole generation pipeline on the CPU, no files needed) into ``runs/rae_eval_tiny``.
"""

import pathlib
import sys

from absl import app, flags
from ml_collections import config_flags

# Running the folder directly (``python apps/rae_eval``) must find the package without an install.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "src"))

from rae_eval.run import run  # noqa: E402

_DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "tiny.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Config file (configs/*.py[:variant]); default: the tiny demo."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/rae_eval_tiny", "Output directory; reused to resume."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value.get("weights") == "random":
        print(
            "RANDOM weights (configs/tiny.py): this runs the whole evaluation pipeline as a "
            "demo; its metrics are not those of a trained RAE. For the published models use "
            "--config apps/rae_eval/configs/rae_dinov2b_256.py (see apps/rae_eval/README.md)."
        )
    results = run(_CONFIG.value, _WORKDIR.value)
    metrics = results["metrics"]
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{results['task']}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    print(f"results in {pathlib.Path(_WORKDIR.value) / ('results_' + results['task'] + '.json')}")


if __name__ == "__main__":
    app.run(main)
