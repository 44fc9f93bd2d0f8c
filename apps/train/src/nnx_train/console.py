"""What the app prints: third-party noise off by default (``--verbose`` shows it).

Hidden unless ``--verbose``: XLA's C++ log lines (the "Very slow compile" alarm of
``slow_operation_alarm.cc``; ``TF_CPP_MIN_LOG_LEVEL``), jax's backend probing ("Unable to
initialize backend 'tpu'"), absl / orbax INFO chatter, and repeats of one Python warning.
A value the user set in the environment wins.
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
    # XLA's C++ logging reads this once, at its first message (after this call: no device
    # has been touched yet). 3 keeps fatal errors only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("once")  # a warning raised in a loop is shown once


def say(message: str) -> None:
    """One line on stderr from process 0 (start line, compile messages)."""
    import jax

    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
