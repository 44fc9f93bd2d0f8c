"""The error the command line prints as one line (``error: ...``, exit status 2)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A command line, config file or config value that cannot be used (names the fix)."""
