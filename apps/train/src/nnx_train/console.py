"""What the app prints: third-party noise off by default (``--verbose`` shows it).

Hidden unless ``--verbose``: XLA's C++ log lines (the "Very slow compile" alarm of
``slow_operation_alarm.cc``), jax's backend probing ("Unable to initialize backend 'tpu'"),
absl / orbax INFO chatter, and repeats of one Python warning.

XLA reads its C++ log level (``TF_CPP_MIN_LOG_LEVEL``) when jaxlib loads, which is before
anything here runs (``nnx_train`` imports jax). So the entry script ``apps/train/__main__.py``
sets the variable to 3 before its first import unless ``--verbose`` is given, and
`quiet_third_party` applies the variable's value to the loaded library too (``python -m
nnx_train``, ``main()`` from Python). A value the user set in the environment wins (but 1,
which jax's import sets where the variable is unset). Tested in
``apps/train/tests/test_console_noise.py``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["quiet_third_party", "say"]

_QUIET_LOGGERS = ("jax._src.xla_bridge", "jax._src.compiler", "absl", "orbax", "grain")


def quiet_third_party(*, verbose: bool) -> None:
    """Hides third-party log noise (or, with ``verbose``, shows INFO logs of everything)."""
    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        logging.getLogger("nnx_train").setLevel(logging.DEBUG)
        return
    # 3: fatal errors only. jax's import sets 1 where the variable is unset, so 1 counts as
    # unset; any other value the user set wins.
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") == "1":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if os.environ["TF_CPP_MIN_LOG_LEVEL"].isdigit():
        _set_xla_cpp_log_level(int(os.environ["TF_CPP_MIN_LOG_LEVEL"]))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("once")  # a warning raised in a loop is shown once


def _set_xla_cpp_log_level(level: int) -> None:
    """Sets the loaded jaxlib's C++ (absl) minimum log level, as jax's own ``jax_logging_level``
    option does (``jax/_src/logging_config.py``, ``_set_cpp_min_log_level``)."""
    try:
        from jax._src.lib import utils

        utils.absl_set_min_log_level(level)
    except (ImportError, AttributeError):  # another jaxlib: the entry script's variable applies
        pass


def say(message: str) -> None:
    """One line on stderr from process 0 (start line, compile messages)."""
    import jax

    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
