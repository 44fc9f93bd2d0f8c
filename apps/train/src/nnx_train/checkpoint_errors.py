"""Checkpoint writes that fail for reasons of the machine (disk full, no permission) as one
line, without the traceback of orbax's background thread.

orbax writes arrays in background threads; when a write fails the thread logs the exception
with its 40-line traceback (``_SignalingThread.run() raised an exception``, orbax
``_src/futures/future.py``) and stores it, and the next ``save`` or ``wait_until_finished``
re-raises it in the main thread. `quiet_orbax_thread_errors` drops that log record (the error
still reaches the caller), and `write_error` turns a disk-full or permission error into a
`CheckpointError` that names the folder and the fix.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from nnx_train.errors import CheckpointError

__all__ = [
    "quiet_orbax_thread_errors",
    "read_permission_error",
    "warn_uncommitted",
    "write_error",
]

log = logging.getLogger("nnx_train.checkpointing")

_DISK_FULL = ("resource_exhausted", "no space left on device", "os_error_code='28'", "errno 28")
_NO_PERMISSION = ("permission_denied", "permission denied", "errno 13", "read-only file system")


class _DropThreadTraceback(logging.Filter):
    """Drops orbax's error records that carry a traceback of a failed background write."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname
        return not (from_orbax and record.levelno >= logging.ERROR and record.exc_info)


_FILTER = _DropThreadTraceback()


def quiet_orbax_thread_errors() -> None:
    """Drops orbax's background-thread exception logs (idempotent): the exception is raised
    again in the main thread, where `write_error` reports it."""
    logger = logging.getLogger("absl")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def _first_line(error: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_error(error: BaseException, directory: Any) -> CheckpointError | None:
    """A one-line `CheckpointError` for a disk-full or permission error while writing to
    ``directory``; ``None`` for any other error (re-raise it as it is)."""
    text = str(error).lower()
    if isinstance(error, OSError) and error.errno == 28 or any(k in text for k in _DISK_FULL):
        return CheckpointError(
            f"No space left to write a checkpoint in {directory} ({_first_line(error)}); free "
            "space there or set checkpoint.directory to a larger disk, then resume with the "
            "same command (the last complete checkpoint is kept)."
        )
    if isinstance(error, PermissionError) or any(k in text for k in _NO_PERMISSION):
        return CheckpointError(
            f"No permission to write a checkpoint in {directory} ({_first_line(error)}); make "
            "it writable for the user running the trainer or set checkpoint.directory, then "
            "resume with the same command."
        )
    return None


def read_permission_error(error: BaseException, path: Any) -> CheckpointError | None:
    """A one-line `CheckpointError` when reading the checkpoint ``path`` failed for lack of
    permission (not a broken checkpoint: nothing may be set aside); else ``None``."""
    text = str(error).lower()
    if not (
        isinstance(error, PermissionError)
        or "permission denied" in text
        or ("permission_denied" in text)
    ):
        return None
    return CheckpointError(
        f"Permission denied reading the checkpoint {path} ({_first_line(error, 300)}); nothing "
        "was changed. Give the user running the trainer read access to it (e.g. chmod -R "
        "u+rX), or point checkpoint.directory at a copy it can read."
    )


def warn_uncommitted(directory: Any, marker: str) -> None:
    """Warns about each step folder of ``directory`` (a bucket) without its commit marker:
    an upload that never completed. orbax would delete such folders on open
    (``cleanup_tmp_directories``); the trainer reports them and leaves them in place."""
    if not directory.exists():
        return
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.isdigit() and not (path / marker).exists():
            log.warning(
                "Checkpoint %s has no %s: its upload never completed. It is not used and is "
                "left in place (remove it when it is no longer needed).",
                path,
                marker,
            )
