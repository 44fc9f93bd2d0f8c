"""One process of ``test_multihost_preemption.py``: the trainer's command line on 2 processes.

Run as ``python preemption_worker.py PROCESS_ID PORT REFERENCE CHAIN SIGTERM_AT`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and ``JAX_PLATFORMS=cpu`` (the test
sets them and a shared compilation cache). The process joins the job through the trainer's
own ``distributed.*`` keys and runs the command line (`nnx_train.cli.main`):

- ``SIGTERM_AT > 0``: first the uninterrupted reference run in ``REFERENCE`` (exit 0),
  then the run in ``CHAIN``, in which process 1 alone sends itself SIGTERM after step
  ``SIGTERM_AT``; the process exits with that run's status (75 expected on both).
- ``SIGTERM_AT == -1``: the run in ``CHAIN`` (resumed), in which process 1 alone sends
  itself SIGTERM while the run is being built, before its first step (75 expected).
- ``SIGTERM_AT == -2``: the run in ``CHAIN`` (resumed), in which process 1 alone sends
  itself SIGTERM after the last step, before the final evaluation (75 expected).
- ``SIGTERM_AT == 0``: the resumed run in ``CHAIN`` (exit 0 expected).

Every run prints ``status=<exit status>`` on its own line.
"""

from __future__ import annotations

import os
import signal
import sys
import time

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs")
CONFIG = os.path.join(CONFIG, "digits.py") + ":tiny"
NUM_STEPS = 16
# XLA's SIGTERM notifier polls for the signal once a second (xla/tsl preemption_notifier.cc,
# ``kListenInterval``), and the sync point is the step after the furthest one any process has
# reached by then. Process 1 waits this long after the signal (a slow host), so the notice
# reaches both processes a few steps after the signal whatever the step time.
NOTICE_WAIT_S = 2.0
# The digits :tiny run of 16 steps with the two-process FSDP split of test_multihost.py
# (the MLP kernels of width 128 span both processes, so every save is a collective one).
OVERRIDES = (
    "model.hidden_size=128",
    "model.depth=1",
    "train.batch_size=16",
    f"train.num_steps={NUM_STEPS}",
    f"schedule.decay_steps={NUM_STEPS}",
    "train.log_every=2",
    "checkpoint.every_steps=8",
    "checkpoint.async_save=True",
    "loader.read_threads=0",
    "sharding.strategy=fsdp",
    "sharding.data=1",
    "sharding.fsdp=8",
    "samples.num_images=0",
    "eval.name=none",
    "logging.progress_bar=False",
)


def _send_sigterm_after(step: int) -> None:
    """Sends SIGTERM to this process once, right after the training step ``step``, then
    waits `NOTICE_WAIT_S`."""
    from nnx_train.preemption import PreemptionWatch

    original = PreemptionWatch.requested

    def requested(self, at_step: int) -> bool:
        if at_step == step:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(NOTICE_WAIT_S)
        return original(self, at_step)

    PreemptionWatch.requested = requested


def _send_sigterm_while_building() -> None:
    """Sends SIGTERM to this process once, when the trainer installs its preemption watch
    (before the state is restored and the step compiled), then waits `NOTICE_WAIT_S`."""
    from nnx_train.preemption import PreemptionWatch

    original = PreemptionWatch.install

    def install(self) -> None:
        original(self)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(NOTICE_WAIT_S)

    PreemptionWatch.install = install


def _run(process_id: int, port: int, workdir: str) -> int:
    from nnx_train.cli import main

    argv = [
        "nnx_train",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        *(f"--config.{o}" for o in OVERRIDES),
        f"--config.distributed.coordinator_address=127.0.0.1:{port}",
        "--config.distributed.num_processes=2",
        f"--config.distributed.process_id={process_id}",
        "--config.distributed.initialization_timeout_s=60",
    ]
    status = main(argv)
    print(f"status={status}", flush=True)
    return status


def main(process_id: int, port: int, reference: str, chain: str, sigterm_at: int) -> int:
    if sigterm_at > 0:
        _run(process_id, port, reference)
        if process_id == 1:
            _send_sigterm_after(sigterm_at)
    if sigterm_at == -1 and process_id == 1:
        _send_sigterm_while_building()
    if sigterm_at == -2 and process_id == 1:
        _send_sigterm_after(NUM_STEPS)
    return _run(process_id, port, chain)


if __name__ == "__main__":
    process, port_number, sigterm_after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[5])
    sys.exit(main(process, port_number, sys.argv[3], sys.argv[4], sigterm_after))
