"""Command line: ``--config`` (an ml_collections config file), ``--workdir`` and overrides.

::

    uv run apps/train                                         # embedded digits default
    python -m nnx_train                                       # the same
    uv run apps/train --config apps/train/configs/sit_b2.py --workdir runs/sit_b2 \\
        --config.data.path=/data/imagenet_sdvae_latents --config.train.batch_size=256
    uv run apps/train --config apps/train/configs/sit_b2.py:tiny   # 2-step smoke run

The config is locked: an override of a key that does not exist fails with the "did you
mean" suggestion of ml_collections, printed as one line (no stack trace). Errors the trainer
raises for bad input (`TrainError`) are printed the same way and exit with status 2.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ml_collections import ConfigDict

from nnx_train.errors import ConfigError, TrainError

__all__ = ["default_config_path", "load_config", "main", "parse_args"]


def default_config_path() -> str | None:
    """``apps/train/configs/digits.py`` of the source tree this package runs from, if any.

    The workspace installs ``nnx_train`` from ``apps/train/src`` in place, so both
    ``uv run apps/train`` and ``python -m nnx_train`` find the embedded default there.
    """
    path = Path(__file__).resolve().parents[2] / "configs" / "digits.py"
    return str(path) if path.is_file() else None


def _clean(message: str) -> str:
    message = str(message).replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    message = re.sub(r"\s+", " ", message).strip()
    if len(message) > 1 and message[0] == message[-1] and message[0] in "'\"":
        message = message[1:-1]  # the repr quotes of a KeyError
    return message


def parse_args(argv: Sequence[str], *, default_config: str | None = None) -> tuple[ConfigDict, str]:
    """Parses ``argv`` (program name first) into the locked config and the workdir.

    Args:
      argv: command line, e.g. ``["train", "--config.train.num_steps=10"]``.
      default_config: config file used when ``--config`` is absent (default
        `default_config_path`).

    Returns:
      ``(config, workdir)``; the workdir defaults to ``runs/<config.name>``.

    Raises:
      ConfigError: unknown flag, unknown or misspelled config key, unreadable config file, a
        value of the wrong type, or no ``--config`` and no default.
    """
    default_config = default_config or default_config_path()
    with warnings.catch_warnings():
        # ml_collections loads config files with the deprecated importlib load_module().
        warnings.simplefilter("ignore", DeprecationWarning)
        return _parse(list(argv), default_config)


def _valid_keys(argv: list[str], default_config: str) -> str:
    """`` Valid keys of config.<section>: a, b, ...`` for the first override of ``argv`` that
    names a missing key (the section is the deepest one that exists), or ``""``."""
    base = [a for a in argv if not a.startswith("--config.")]
    try:
        config, _ = _parse(base, default_config)
    except ConfigError:
        return ""
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        node, where = config, "config"
        for part in arg.removeprefix("--config.").split("=", 1)[0].split("."):
            if not isinstance(node, ConfigDict):
                break
            if part not in node:
                return f" Valid keys of {where}: {', '.join(sorted(node.keys()))}."
            node, where = node[part], f"{where}.{part}"
    return ""


def _parse(argv: list[str], default_config: str) -> tuple[ConfigDict, str]:
    from absl import flags
    from ml_collections import config_flags

    values = flags.FlagValues()
    try:
        holder = config_flags.DEFINE_config_file(
            "config",
            default_config,
            "Path to an ml_collections config file (optionally file.py:argument).",
            flag_values=values,
            lock_config=True,
            sys_argv=argv,
        )
        workdir = flags.DEFINE_string(
            "workdir", None, "Run folder (default runs/<config.name>).", flag_values=values
        )
        values(argv)
        config = holder.value
        if config is None:
            raise ConfigError(
                "No --config given and no default apps/train/configs/digits.py next to this "
                "installation of nnx_train; pass --config path/to/config.py."
            )
        name = str(config.name)  # a config file that failed to load raises here
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as err:
        text = _clean(err)
        if "Did you mean" in text or isinstance(err, AttributeError | KeyError):
            end = "" if text.endswith(("?", ".")) else "."
            raise ConfigError(
                f"Unknown config key in the overrides: {text}{end}"
                f"{_valid_keys(argv, default_config)} Overrides must name existing keys (see "
                "apps/train/README.md or the config file)."
            ) from err
        end = "" if text.endswith(("?", ".")) else "."
        raise ConfigError(
            f"Bad command line: {text}{end} Give each --config.<key>=<value> a value of the type "
            "the config file sets (see apps/train/README.md)."
        ) from err
    return config, workdir.value or os.path.join("runs", name)


def load_config(path: str, overrides: Sequence[str] = ()) -> ConfigDict:
    """Loads a config file (``file.py`` or ``file.py:arg``) with ``a.b=value`` overrides."""
    argv = ["train", f"--config={path}", *(f"--config.{o}" for o in overrides)]
    return parse_args(argv, default_config=path)[0]


def main(argv: Sequence[str] | None = None, *, default_config: str | None = None) -> int:
    """Entry point of ``uv run apps/train`` and ``python -m nnx_train``; returns the exit
    status. ``default_config`` defaults to `default_config_path`."""
    argv = list(sys.argv if argv is None else argv)
    try:
        config, workdir = parse_args(argv, default_config=default_config)
        from nnx_train.train import train

        metrics = train(config, workdir)
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with the same command (checkpoints are kept).", file=sys.stderr)
        return 130
    summary = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if k
        in (
            "step",
            "generated_class_accuracy",
            "classifier_heldout_accuracy",
            "classifier_frechet_distance",
            "nfe",
            "teacher_generated_class_accuracy",
            "teacher_nfe",
            "wall_seconds",
            "fid",
        )
    )
    print(f"done: {summary}; outputs in {os.path.abspath(workdir)}")
    return 0
