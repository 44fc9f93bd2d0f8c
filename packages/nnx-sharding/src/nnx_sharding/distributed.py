"""Multi-host start-up: one call to join every process of the job into one JAX runtime.

After `initialize_distributed`, ``jax.devices()`` lists the devices of all processes, and the
usual single-program code (mesh, `sharded_init`, jitted step, `global_batch`, `save_state`)
runs unchanged on every host. See the package README for TPU pods and GPU clusters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax

__all__ = ["ProcessInfo", "initialize_distributed", "process_info"]


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands in the job.

    Attributes:
      process_index: this process, in ``[0, process_count)``.
      process_count: number of processes (hosts) in the job.
      local_device_count: devices attached to this process.
      device_count: devices in the whole job.
      platform: ``"cpu"``, ``"gpu"`` or ``"tpu"``.
    """

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int
    platform: str

    @property
    def is_coordinator(self) -> bool:
        """True on process 0 (the one that should log and write summaries)."""
        return self.process_index == 0


def process_info() -> ProcessInfo:
    """The current `ProcessInfo` (single-process runs report one process)."""
    return ProcessInfo(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        device_count=jax.device_count(),
        platform=jax.default_backend(),
    )


def _check_explicit(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> list[str]:
    """The names of the explicit arguments given: all three or none, ``process_id`` in range."""
    explicit = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    given = [name for name, value in explicit.items() if value is not None]
    if given and len(given) != len(explicit):
        missing = [name for name in explicit if name not in given]
        raise ValueError(
            f"initialize_distributed got {given} but not {missing}. Give all three of "
            "coordinator_address, num_processes and process_id, or none of them to detect the "
            "cluster (TPU pod, SLURM, Open MPI, GKE) from the environment."
        )
    if given and not 0 <= process_id < num_processes:  # type: ignore[operator]
        raise ValueError(
            f"process_id must be in [0, {num_processes}), got {process_id}; number the "
            "processes 0 .. num_processes - 1 with 0 on the coordinator."
        )
    return given


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    initialization_timeout_s: int = 300,
) -> ProcessInfo:
    """Joins this process to the job (``jax.distributed.initialize``); idempotent.

    Call it first, before any other JAX call. With no arguments the cluster is detected from
    the environment (Cloud TPU pods, SLURM, Open MPI, Kubernetes / GKE and other environments
    JAX supports). Elsewhere (several GPU hosts started by hand, or local processes in tests)
    give all three of ``coordinator_address``, ``num_processes`` and ``process_id``.

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: number of processes in the job.
      process_id: this process's index, ``0`` on the coordinator.
      local_device_ids: restrict this process to these local accelerators (one process per
        GPU); default: all local devices.
      initialization_timeout_s: seconds to wait for every process to join.

    Returns:
      This process's `ProcessInfo`.

    Raises:
      ValueError: only some of the three explicit arguments are given, or ``process_id`` is
        out of range.
      RuntimeError: no arguments and no cluster environment detected.
    """
    given = _check_explicit(coordinator_address, num_processes, process_id)
    if jax.distributed.is_initialized():
        return process_info()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout_s,
        )
    except ValueError as error:
        if given:
            raise
        raise RuntimeError(
            "jax.distributed could not detect a cluster environment (TPU pod, SLURM, Open MPI, "
            "GKE). Pass coordinator_address='host:port', num_processes and process_id "
            "explicitly, or skip initialize_distributed for a single-process run."
        ) from error
    return process_info()
