"""Preemption: SIGTERM saves a checkpoint at the next step boundary, then the run exits 75.

TPU VMs, SLURM (``scancel``, a time limit with ``--signal``), Kubernetes and most batch
systems announce an eviction with SIGTERM and follow it with SIGKILL after a grace period.
On SIGTERM the trainer finishes the step in flight, saves the state at that step (waiting
for any asynchronous save before it), waits for the save to be committed, and raises
`Preempted`; the command line prints one line and exits with `PREEMPTED_EXIT_STATUS` (75,
``EX_TEMPFAIL`` of BSD ``sysexits.h``: "temporary failure, the user is invited to retry"),
so a job script can requeue on 75 and treat 2 (bad input) as final. SIGINT (Ctrl-C) keeps
its own status, 130.

With several processes every process must save the same step. JAX's preemption service
(``jax.distributed``; on by default) catches SIGTERM on any host, agrees on a step with the
others, and `jax.experimental.multihost_utils.reached_preemption_sync_point` returns True on
every process at that same step (JAX docs, "Preemption notice"); the trainer asks it after
every step. With one process the Python handler below sets a flag instead.

The sync points are numbered from the first step of each `train` call (1, 2, ...), not by
the global step: XLA's sync manager (``xla/tsl/distributed_runtime/preemption/
preemption_sync_manager.cc``) sets the sync point to one past the largest number any process
has passed, counting from 0 before the first call, and matches it exactly. A notice while
a resumed run is being built (restore, compilation: minutes on a large model) therefore set
it to 1, which a global step past the resumed one never equals: the run trained on, unsaved,
until it was killed. Counted per call, such a notice saves the first step. The end of the
loop is one more sync point (`at_end`), so a notice after the last step, before the final
evaluation, stops every process there with the final checkpoint saved; the evaluation runs
on resume. A notice during that evaluation is not acted on with several processes (it has
no sync points): the checkpoint is already saved, and the evaluation runs on until the
scheduler's SIGKILL.

The processes always agree on the sync point: the sync manager sets it one past the largest
call number any of them has made when the notice reaches it, and all of them make the same
calls. A notice that reaches a process only after it has asked at the end is therefore not
acted on by any; the barrier in `at_end` keeps that window to the notice's own latency.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp

from nnx_train.multihost import barrier

__all__ = ["PREEMPTED_EXIT_STATUS", "Preempted", "PreemptionWatch", "TrainerCheckpointManager"]

log = logging.getLogger(__name__)

PREEMPTED_EXIT_STATUS = 75


class Preempted(Exception):
    """The run stopped for a preemption notice after saving ``step`` (``None``: nothing new
    to save, the last checkpoint on disk is current)."""

    def __init__(self, step: int | None) -> None:
        self.step = step
        where = "" if step is None else f" at step {step}"
        super().__init__(
            f"preempted (SIGTERM): stopped{where} with the checkpoint saved; resume with the "
            "same command."
        )


class TrainerCheckpointManager(ocp.CheckpointManager):
    """An orbax ``CheckpointManager`` that leaves JAX's preemption sync points to the trainer.

    Orbax's manager asks ``reached_preemption_sync_point(step)`` itself, with the global step,
    in ``should_save``, ``save`` and (in its background thread) when a save is finalised
    (orbax ``checkpoint/checkpoint_manager.py``). The sync manager takes every call as the
    process's current number, so those calls pushed the sync point past the trainer's own
    numbers: a notice after the last step set it to one past the last global step, and
    neither process ever stopped. The trainer decides when to save for a preemption; this
    manager never reports one.
    """

    def reached_preemption(self, step: int) -> bool:
        return False


class PreemptionWatch:
    """Notices a preemption: `install` before the loop, `requested(step)` after each step,
    `uninstall` at the end (restores the previous SIGTERM handler)."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._previous: Any = None
        self._installed = False
        self._multihost = False
        self._steps = 0  # sync points of this call: JAX's numbers (see the docstring)

    def install(self) -> None:
        self._steps = 0
        if jax.process_count() > 1:
            self._multihost = True
            return  # JAX's own SIGTERM notifier is installed; do not replace it
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._flag.set()

    def requested(self, step: int) -> bool:
        """Whether to save and stop after ``step`` (every process must call it after every
        step of the loop, and only there: the calls number JAX's sync points)."""
        return self._next_sync_point()

    def pending(self) -> bool:
        """A notice received outside the loop (one process only; see `requested`)."""
        return self._flag.is_set()

    def at_end(self) -> bool:
        """Whether a notice came after the last step: every process calls it once, after
        the loop. With several processes it is one more sync point, behind a barrier: a
        process that asked before the others had heard of the notice would set the sync
        point past every call (a notice that late is not acted on, consistently)."""
        if self._multihost:
            barrier("nnx_train:preemption-at-end")
        return self._next_sync_point()

    def _next_sync_point(self) -> bool:
        if not self._multihost:
            return self._flag.is_set()
        from jax.experimental import multihost_utils

        self._steps += 1
        try:
            return bool(multihost_utils.reached_preemption_sync_point(self._steps))
        except RuntimeError:  # the service is off (jax_enable_preemption_service=False)
            log.warning(
                "JAX's preemption service is off (jax_enable_preemption_service): a SIGTERM "
                "ends this multi-process run without a final checkpoint."
            )
            self._multihost = False
            return False

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
