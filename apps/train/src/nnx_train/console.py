"""What the app prints: third-party noise off by default (``--verbose`` shows it).

Hidden unless ``--verbose``: XLA's C++ log lines (the "Very slow compile" alarm of
``slow_operation_alarm.cc``), jax's backend probing ("Unable to initialize backend 'tpu'"),
absl / orbax INFO chatter, and repeats of one Python warning.

XLA reads its C++ log level (``TF_CPP_MIN_LOG_LEVEL``) once, when jaxlib loads, which is
before anything here runs (``nnx_train`` imports jax): the entry script ``apps/train/__main__.py``
sets it to 3 before its first import unless ``--verbose`` is given (a value the user set in
the environment wins). Tested in ``apps/train/tests/test_console_noise.py``.
"""

from __future__ import annotations

import logging
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
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("once")  # a warning raised in a loop is shown once


def say(message: str) -> None:
    """One line on stderr from process 0 (start line, compile messages)."""
    import jax

    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
