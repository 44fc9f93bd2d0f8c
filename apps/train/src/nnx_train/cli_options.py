"""The flags of ``uv run apps/train`` besides ``--config.a.b=value`` overrides, and ``--help``.

`parse_options` splits a command line into `Options` (command, ``--config``, ``--workdir``,
``--data*``, ``--verbose`` and the ``sample`` / ``evaluate`` flags) and the ``--config.*``
overrides, which `nnx_train.cli.apply_overrides` applies; `usage` is the ``--help`` text.
"""

from __future__ import annotations

import argparse
import dataclasses

from nnx_train.data_flags import DATA_SECTIONS
from nnx_train.errors import ConfigError

__all__ = ["COMMANDS", "Options", "parse_options", "usage"]

COMMANDS = {
    "train": "train, or resume the run in --workdir (the default command)",
    "sample": "write PNG grids and an ADM .npz from a checkpoint of --workdir",
    "evaluate": "compute the config's metrics of a checkpoint into a new timestamped JSON",
}

# (flag, metavar, type, help); the commands they apply to are in `_FOR`.
_FLAGS = (
    (
        "--config",
        "FILE[:ARG]",
        str,
        "config file and its argument (default: configs/digits.py; "
        "sample/evaluate: <workdir>/config.json)",
    ),
    ("--workdir", "DIR", str, "run folder (default runs/<config.name>)"),
    (
        "--data",
        "NAME",
        str,
        f"replace the data section: {', '.join(DATA_SECTIONS)} (its defaults; "
        "--config.data.* then overrides)",
    ),
    ("--data_path", "PATH", str, "data.path (folder, zip, glob or shard range)"),
    ("--data_format", "FORMAT", str, "data.content of arrayrecord / webdataset: pixels or latents"),
    ("--step", "N", int, "sample/evaluate: the checkpoint step (default: the newest)"),
    ("--weights", "W", str, "sample: 'ema' (samples.ema, the default), 'raw', or an EMA decay"),
    ("--num_images", "N", int, "sample: number of images (default samples.num_images, or 64)"),
    ("--seed", "S", int, "sample: noise and label seed (default config.seed + 1)"),
    ("--out", "DIR", str, "sample: output folder (default <workdir>/samples/<time>_step<N>)"),
)
_FOR = {
    "--step": ("sample", "evaluate"),
    "--weights": ("sample",),
    "--num_images": ("sample",),
    "--seed": ("sample",),
    "--out": ("sample",),
}


@dataclasses.dataclass
class Options:
    """The flags of one command line (``None``: not given)."""

    command: str = "train"
    config: str | None = None
    workdir: str | None = None
    data: str | None = None
    data_path: str | None = None
    data_format: str | None = None
    step: int | None = None
    weights: str | None = None
    num_images: int | None = None
    seed: int | None = None
    out: str | None = None
    verbose: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit
        raise ConfigError(f"Bad command line: {message}; see --help.")


def parse_options(args: list[str]) -> tuple[Options, list[str]]:
    """``(options, overrides)`` of ``args`` (the command line without the program name).

    Raises:
      ConfigError: an unknown flag, a flag of another command, or a bad value.
    """
    command = "train"
    if args and not args[0].startswith("-"):
        command = args.pop(0)
        if command not in COMMANDS:
            raise ConfigError(
                f"Unknown command {command!r}; valid: {', '.join(COMMANDS)} (see --help)."
            )
    parser = _Parser(add_help=False, allow_abbrev=False)
    for flag, metavar, kind, _ in _FLAGS:
        parser.add_argument(flag, metavar=metavar, type=kind)
    parser.add_argument("--verbose", action="store_true")
    known, rest = parser.parse_known_args(args)
    overrides, unknown = [], []
    for arg in rest:  # "--config.a.b=v", or "--config.a.b" followed by its value
        is_value = bool(overrides) and "=" not in overrides[-1] and not arg.startswith("--")
        if arg.startswith("--config.") or is_value:
            overrides.append(arg)
        else:
            unknown.append(arg)
    if unknown:
        valid = ", ".join(f for f, *_ in _FLAGS)
        raise ConfigError(
            f"Unknown argument {unknown[0]!r}; valid flags: {valid}, --verbose and "
            "--config.<key>=<value> (see --help)."
        )
    options = Options(command=command, **vars(known))
    for flag, commands in _FOR.items():
        if getattr(options, flag[2:]) is not None and command not in commands:
            raise ConfigError(
                f"{flag} applies to `{' / '.join(commands)}`, not `{command}`; see --help."
            )
    return options, overrides


def usage(config_folder: str, *, full: bool = False) -> str:
    """The ``--help`` text: commands, flags, and the config files of ``config_folder`` with
    their ``:arguments`` (``--helpfull`` adds the config sections)."""
    from nnx_train.config_files import describe_config_files

    lines = [
        "usage: uv run apps/train [train|sample|evaluate] [--config FILE[:ARG]] [--workdir DIR] "
        "[flags] [--config.KEY=VALUE ...]",
        "",
        "commands:",
        *(f"  {name:<10} {text}" for name, text in COMMANDS.items()),
        "",
        "flags:",
        *(f"  {flag + ' ' + metavar:<24} {text}" for flag, metavar, _, text in _FLAGS),
        f"  {'--verbose':<24} show third-party logs (XLA, absl, jax backends) and debug lines",
        f"  {'--config.KEY=VALUE':<24} override any key of the config (a misspelled key fails)",
        f"  {'-h, --help, --helpfull':<24} this text (--helpfull: also the config sections)",
        "",
        f"config files ({config_folder}):",
        *describe_config_files(config_folder),
    ]
    if full:
        from nnx_train import defaults

        table = [line for line in (defaults.__doc__ or "").splitlines() if line.startswith("|")]
        lines += ["", "config sections (nnx_train/defaults.py):", *table]
    return "\n".join(lines)
