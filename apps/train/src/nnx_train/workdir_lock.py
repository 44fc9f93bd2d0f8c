"""One run per workdir: an advisory lock file ``<workdir>/train.lock``.

A second run started on a busy workdir would otherwise clean up the first run's in-flight
save (orbax's ``cleanup_tmp_directories`` deletes every ``*.orbax-checkpoint-tmp*`` folder it
finds) and append its own lines to the same ``metrics.jsonl``. The lock file holds
``{"host", "pid", "started"}`` (JSON) of the process that holds it:

- it is created with ``O_CREAT | O_EXCL`` (atomic on local disks and NFSv3+), so of two runs
  that start together exactly one gets it;
- a second run is refused with a one-line `WorkdirLockedError` naming the holder;
- a lock left by a process that is gone (same host, no such pid: a kill -9, a crash of the
  machine's previous boot) is taken over with a warning; a lock of another host cannot be
  checked and is never taken over (the message says how to release it by hand);
- with several processes, process 0 takes it and broadcasts the outcome, so every process
  raises the same error instead of waiting at the next collective.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time

import jax
import numpy as np

from nnx_train.errors import TrainError

__all__ = ["LOCK_NAME", "WorkdirLock", "WorkdirLockedError"]

log = logging.getLogger(__name__)

LOCK_NAME = "train.lock"


class WorkdirLockedError(TrainError):
    """Another live run holds the workdir."""


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        if isinstance(started, int | float)
        else "at an unknown time"
    )
    return f"pid {holder.get('pid')} on host {holder.get('host')!r}, started {when}"


class WorkdirLock:
    """The advisory lock of one workdir, held from `acquire` to `release`.

    Args:
      workdir: the run folder (local; it exists).
    """

    def __init__(self, workdir: str) -> None:
        self.path = os.path.join(workdir, LOCK_NAME)
        self.held = False
        self._record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}

    def acquire(self) -> None:
        """Takes the lock (process 0) and tells every process whether it succeeded.

        Raises:
          WorkdirLockedError: another live run holds it (on every process).
        """
        message = ""
        if jax.process_index() == 0:
            try:
                self._take()
            except WorkdirLockedError as err:
                message = str(err)
        if jax.process_count() > 1:
            message = _broadcast_text(message)
        if message:
            raise WorkdirLockedError(message)

    def _take(self) -> None:
        for _ in range(3):  # a holder that ends between our open and our read: try again
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:
                    continue
                self._refuse_or_take_over(holder)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self._record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            self.held = True
            return
        raise WorkdirLockedError(
            f"Cannot take the workdir lock {self.path}: other runs keep taking it; start one "
            "run per --workdir."
        )

    def _read(self) -> dict | None:
        try:
            with open(self.path) as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:  # a holder killed while writing it: the lock is stale
            holder = {}
        return holder if isinstance(holder, dict) else {}

    def _refuse_or_take_over(self, holder: dict) -> None:
        """Raises for a live holder; removes the lock of a dead one (the caller retries)."""
        here = socket.gethostname()
        pid = holder.get("pid")
        if holder.get("host") == here and isinstance(pid, int) and pid != os.getpid():
            if _alive(pid):
                raise WorkdirLockedError(
                    f"The workdir {os.path.dirname(self.path)} is in use by another run "
                    f"({_describe(holder)}); wait for it to end or use another --workdir."
                )
        elif holder and holder.get("host") != here:
            raise WorkdirLockedError(
                f"The workdir {os.path.dirname(self.path)} is in use by a run on another host "
                f"({_describe(holder)}); wait for it to end or use another --workdir. If that "
                f"run is gone, remove {self.path} by hand."
            )
        log.warning(
            "Taking over the workdir lock %s of a run that is gone (%s).",
            self.path,
            _describe(holder) if holder else "unreadable lock file",
        )
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def release(self) -> None:
        """Removes the lock file if this process holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        holder = self._read()
        if holder is not None and holder.get("pid") == os.getpid():
            os.remove(self.path)


def _broadcast_text(text: str, size: int = 1024) -> str:
    """Process 0's ``text`` (at most ``size`` UTF-8 bytes) on every process."""
    from jax.experimental import multihost_utils

    data = np.zeros(size, np.uint8)
    encoded = text.encode()[:size]
    data[: len(encoded)] = np.frombuffer(encoded, np.uint8)
    data = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(data.astype(np.uint8)).rstrip(b"\0").decode(errors="replace")
