"""Command line of ``uv run apps/rae_eval``: the shape of ``uv run apps/train``.

``--config FILE[:ARG]`` (default ``configs/tiny.py``), ``--workdir DIR``, ``--verbose``,
``--config.a.b=value`` overrides, ``-h`` / ``--help`` / ``--helpfull`` (flags, config files
and their ``:arguments``). A bad command line, config file, key or value, a missing or
mismatched weight file is printed as one ``error: ...`` and exits with status 2
(``--verbose`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from ml_collections import ConfigDict

from nnx_train.config_files import describe_config_files, load_config_file
from nnx_train.errors import ConfigError

__all__ = ["main", "parse_args", "usage"]

_FLAGS = (
    ("--config", "FILE[:ARG]", "config file and its argument (default: configs/tiny.py)"),
    (
        "--workdir",
        "DIR",
        "outputs; rerunning with the same workdir resumes (default runs/rae_eval_tiny)",
    ),
)


def usage(config_folder: str) -> str:
    """The ``--help`` text: flags and the config files of ``config_folder`` with arguments."""
    return "\n".join(
        [
            "usage: uv run apps/rae_eval [--config FILE[:ARG]] [--workdir DIR] [--verbose] "
            "[--config.KEY=VALUE ...]",
            "",
            "flags:",
            *(f"  {flag + ' ' + metavar:<24} {text}" for flag, metavar, text in _FLAGS),
            f"  {'--verbose':<24} third-party logs, and a traceback with each error",
            f"  {'--config.KEY=VALUE':<24} override any key of the config (a misspelled key fails)",
            f"  {'-h, --help, --helpfull':<24} this text",
            "",
            f"config files ({config_folder}):",
            *describe_config_files(config_folder),
        ]
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"Bad command line: {message}; see --help.")


def _clean(message: object) -> str:
    text = re.sub(r"\s+", " ", str(message).replace("\\n", " ").replace("\\'", "'")).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # the repr quotes of a KeyError
    return text


def _overrides(config: ConfigDict, args: list[str]) -> ConfigDict:
    from absl import flags
    from ml_collections import config_flags

    values = flags.FlagValues()
    argv = ["rae_eval", *args]
    try:
        holder = config_flags.DEFINE_config_dict(
            "config", config, flag_values=values, lock_config=True, sys_argv=argv
        )
        values(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as err:
        what = "Unknown config key" if isinstance(err, AttributeError | KeyError) else "Bad value"
        raise ConfigError(
            f"{what} in the overrides: {_clean(err)}; overrides must name existing keys (valid "
            f"top-level keys: {', '.join(sorted(config.keys()))}) with values of the config "
            "file's type."
        ) from None
    return holder.value


def parse_args(argv: Sequence[str], *, default_config: str) -> tuple[ConfigDict, str, bool]:
    """``(config, workdir, verbose)`` of ``argv`` (program name first)."""
    parser = _Parser(add_help=False, allow_abbrev=False)
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--workdir", default="runs/rae_eval_tiny")
    parser.add_argument("--verbose", action="store_true")
    known, rest = parser.parse_known_args(list(argv[1:]))
    overrides = [a for a in rest if a.startswith("--config.")]
    unknown = [a for a in rest if not a.startswith("--config.")]
    if unknown:
        raise ConfigError(
            f"Unknown argument {unknown[0]!r}; valid flags: --config, --workdir, --verbose and "
            "--config.<key>=<value> (see --help)."
        )
    config = load_config_file(known.config)
    return _overrides(config, overrides), known.workdir, known.verbose


def _report(results: dict, workdir: str) -> None:
    metrics = results["metrics"]
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    print(f"{results['task']}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    print(f"results in {os.path.join(workdir, 'results_' + results['task'] + '.json')}")


def main(argv: Sequence[str] | None = None, *, default_config: str) -> int:
    """Entry point of ``uv run apps/rae_eval``; returns the exit status."""
    from rae_eval.checkpoints import CheckpointMismatchError, MissingCheckpointError
    from rae_eval.shards import FingerprintMismatchError

    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(usage(os.path.dirname(default_config)))
        return 0
    verbose = "--verbose" in argv
    user_errors = (
        ConfigError,
        MissingCheckpointError,
        CheckpointMismatchError,
        FingerprintMismatchError,
        FileNotFoundError,
        ValueError,
    )
    try:
        config, workdir, verbose = parse_args(argv, default_config=default_config)
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if config.get("weights") == "random":
            print(
                "RANDOM weights (configs/tiny.py): this runs the whole evaluation pipeline as a "
                "demo; its metrics are not those of a trained RAE. For the published models use "
                "--config apps/rae_eval/configs/rae_dinov2b_256.py (see apps/rae_eval/README.md)."
            )
        from rae_eval.run import run

        results = run(config, workdir)
    except user_errors as err:
        if verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    _report(results, workdir)
    return 0
