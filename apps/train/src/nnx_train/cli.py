"""Command line: ``[train|sample|evaluate] --config FILE[:ARG] --workdir DIR --config.a.b=v``.

::

    uv run apps/train                                         # embedded digits default
    python -m nnx_train                                       # the same
    uv run apps/train --help                                  # flags, config files, arguments
    uv run apps/train --config apps/train/configs/sit_b2.py --workdir runs/sit_b2 \\
        --data_path=/data/imagenet_sdvae_latents --config.train.batch_size=256
    uv run apps/train --config apps/train/configs/sit_b2.py:tiny   # 2-step smoke run
    uv run apps/train sample --workdir runs/digits             # PNG grids + ADM .npz
    uv run apps/train evaluate --workdir runs/digits           # metrics into a new JSON

The config is locked: an override of a key that does not exist fails with the "did you
mean" suggestion of ml_collections and the valid keys, printed as one line (no stack trace).
Errors the trainer raises for bad input (`TrainError`) are printed the same way and exit with
status 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_collections import ConfigDict

from nnx_train.cli_options import Options, parse_options, usage
from nnx_train.errors import ConfigError, TrainError
from nnx_train.preemption import PREEMPTED_EXIT_STATUS, Preempted

__all__ = ["Command", "default_config_path", "load_config", "main", "parse_args", "parse_command"]


@dataclasses.dataclass
class Command:
    """A parsed command line: the command, the locked config, the workdir and the options."""

    name: str
    config: ConfigDict
    workdir: str
    options: Options


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


def _valid_keys(config: ConfigDict, overrides: list[str]) -> str:
    """`` Valid keys of config.<section>: a, b, ...`` for the first override that names a
    missing key (the section is the deepest one that exists), or ``""``."""
    for arg in overrides:
        node, where = config, "config"
        for part in arg.removeprefix("--config.").split("=", 1)[0].split("."):
            if not isinstance(node, ConfigDict):
                break
            if part not in node:
                hint = (
                    " Another data source: --data=NAME (and --data_path, --data_format)."
                    if where == "config.data"
                    else ""
                )
                return f" Valid keys of {where}: {', '.join(sorted(node.keys()))}.{hint}"
            node, where = node[part], f"{where}.{part}"
    return ""


def apply_overrides(config: ConfigDict, overrides: list[str]) -> ConfigDict:
    """Locks ``config`` and applies ``--config.a.b=value`` arguments (absl / ml_collections).

    Raises:
      ConfigError: an unknown key (with the valid keys of its section) or a value of the
        wrong type.
    """
    from absl import flags
    from ml_collections import config_flags

    reference = ConfigDict(config.to_dict())  # for the valid keys, untouched by the parse
    values = flags.FlagValues()
    argv = ["train", *overrides]
    try:
        holder = config_flags.DEFINE_config_dict(
            "config", config, flag_values=values, lock_config=True, sys_argv=argv
        )
        values(argv)
        return holder.value
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as err:
        text = _clean(err)
        end = "" if text.endswith(("?", ".")) else "."
        if "Did you mean" in text or isinstance(err, AttributeError | KeyError):
            raise ConfigError(
                f"Unknown config key in the overrides: {text}{end}"
                f"{_valid_keys(reference, overrides)} Overrides must name existing keys (see "
                "apps/train/README.md or the config file)."
            ) from None
        raise ConfigError(
            f"Bad command line: {text}{end} Give each --config.<key>=<value> a value of the type "
            "the config file sets (see apps/train/README.md)."
        ) from None


def _workdir_config(workdir: str | None, command: str) -> ConfigDict:
    """The resolved config a run saved in ``workdir/config.json`` (for sample / evaluate)."""
    import json

    if not workdir:
        raise ConfigError(f"`{command}` needs --workdir: the folder of a trained run.")
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: {workdir} is not the workdir of a run; pass the --workdir "
            "a training run wrote (or --config with the config that trained it)."
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} cannot be read ({err}); pass --config instead.") from None

    def tuples(value):  # JSON lists were tuples in the config
        if isinstance(value, dict):
            return {k: tuples(v) for k, v in value.items()}
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    return ConfigDict(tuples(saved))


def parse_command(argv: Sequence[str], *, default_config: str | None = None) -> Command:
    """Parses ``argv`` (program name first) into a `Command`.

    ``train`` (the default command) loads ``--config`` (default ``default_config``, then
    `default_config_path`); ``sample`` and ``evaluate`` read ``<workdir>/config.json`` unless
    ``--config`` is given. ``--data*`` flags, then ``--config.a.b=value`` overrides, apply;
    `main` checks the data section (`nnx_train.data_flags.check_data_section`) before training.

    Raises:
      ConfigError: an unknown flag, config-file problem, key or value.
    """
    from nnx_train.config_files import load_config_file
    from nnx_train.data_flags import apply_data_flags

    options, overrides = parse_options(list(argv[1:]))
    spec = options.config
    if options.command == "train" or spec:
        spec = spec or default_config or default_config_path()
        if spec is None:
            raise ConfigError(
                "No --config given and no default apps/train/configs/digits.py next to this "
                "installation of nnx_train; pass --config path/to/config.py."
            )
        config = load_config_file(spec)
        if not isinstance(config, ConfigDict):
            raise ConfigError(
                f"get_config of {spec} returned a {type(config).__name__}, not a ConfigDict."
            )
    else:
        config = _workdir_config(options.workdir, options.command)
    apply_data_flags(config, options)
    config = apply_overrides(config, overrides)
    workdir = options.workdir or os.path.join("runs", str(config.name))
    return Command(options.command, config, workdir, options)


def parse_args(argv: Sequence[str], *, default_config: str | None = None) -> tuple[ConfigDict, str]:
    """``(config, workdir)`` of a ``train`` command line (see `parse_command`)."""
    command = parse_command(argv, default_config=default_config)
    return command.config, command.workdir


def load_config(path: str, overrides: Sequence[str] = ()) -> ConfigDict:
    """Loads a config file (``file.py`` or ``file.py:arg``) with ``a.b=value`` overrides."""
    argv = ["train", f"--config={path}", *(f"--config.{o}" for o in overrides)]
    return parse_args(argv, default_config=path)[0]


def _summary(metrics: dict) -> str:
    shown = (
        "step",
        "generated_class_accuracy",
        "classifier_heldout_accuracy",
        "classifier_frechet_distance",
        "nfe",  # distilled students: network evaluations per sample, next to the teacher's
        "teacher_generated_class_accuracy",
        "teacher_nfe",
        "wall_seconds",
        "fid",
    )
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in metrics.items()
        if k.split("_steps")[0] in shown  # few-step evaluations: <name>_steps<n>
    )


def _run(command: Command) -> str:
    """Runs ``command``; returns its last line."""
    if command.name == "train":
        from nnx_train.data_flags import check_data_section
        from nnx_train.metrics_log import check_wandb
        from nnx_train.train import train

        check_data_section(command.config)  # before anything is built
        check_wandb(command.config.logging.wandb_mode)

        metrics = train(command.config, command.workdir)
        return f"done: {_summary(metrics)}; outputs in {os.path.abspath(command.workdir)}"
    from nnx_train.commands import evaluate_workdir, sample_workdir

    if command.name == "sample":
        return sample_workdir(command.config, command.workdir, command.options)
    return evaluate_workdir(command.config, command.workdir, command.options)


def main(argv: Sequence[str] | None = None, *, default_config: str | None = None) -> int:
    """Entry point of ``uv run apps/train`` and ``python -m nnx_train``; returns the exit
    status. ``default_config`` defaults to `default_config_path`."""
    from nnx_train.console import quiet_third_party

    argv = list(sys.argv if argv is None else argv)
    try:
        if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
            folder = os.path.dirname(default_config or default_config_path() or "")
            print(usage(folder, full="--helpfull" in argv))
            return 0
        # Before the config file runs (it may compile): its logs are third-party noise too.
        quiet_third_party(verbose="--verbose" in argv[1:])
        command = parse_command(argv, default_config=default_config)
        last_line = _run(command)
    except Preempted as notice:
        print(notice, file=sys.stderr)
        return PREEMPTED_EXIT_STATUS
    except TrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with the same command (checkpoints are kept).", file=sys.stderr)
        return 130
    print(last_line)
    return 0
