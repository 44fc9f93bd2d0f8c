"""Exceptions whose messages name the problem and the fix.

Every error a user can cause (a misspelled config key, a corrupt latent file, a label out of
range, a NaN loss) is raised as one of these with a one-line message; the command line prints
that line instead of a stack trace.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "NonFiniteError", "TrainError"]


class TrainError(Exception):
    """Base class of the errors the trainer reports as one line."""


class ConfigError(TrainError, ValueError):
    """A config value or name that cannot be built (lists the valid choices)."""


class DataError(TrainError, ValueError):
    """An empty, corrupt or mislabelled dataset (names the file and how to fix it)."""


class CheckpointError(TrainError, RuntimeError):
    """A checkpoint that cannot be restored into this run (another model, corrupt files)."""


class NonFiniteError(TrainError, FloatingPointError):
    """The loss or the gradients became NaN/Inf under the ``stop`` policy."""
