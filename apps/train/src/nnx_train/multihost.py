"""Several processes (hosts) in one run: joining the job, data rows, gathers and barriers.

The trainer is one SPMD program: every process runs every line, and everything that touches
a global array (the step, sampling, the sample grid, evaluation, checkpoints, metric
averages) is a collective that all processes must call in the same order. Only writing files
and logging are done by process 0 alone.

``config.distributed`` decides how processes join (``jax.distributed.initialize`` through
`nnx_sharding.initialize_distributed`, before any device is touched):

| key                        | meaning                                                      |
|----------------------------|--------------------------------------------------------------|
| `initialize`               | ``"auto"``: join when the three keys below are set or a       |
|                            | cluster is detected (TPU VM, SLURM with several tasks, Open   |
|                            | MPI); ``"on"``: always join (fails if nothing is found);      |
|                            | ``"off"``: one process                                        |
| `coordinator_address`      | ``"host:port"`` of process 0 (``""``: detected)               |
| `num_processes`            | processes in the job (``0``: detected)                        |
| `process_id`               | this process, 0 on the coordinator (``-1``: detected)         |
| `initialization_timeout_s` | seconds to wait for the coordinator and for every process     |
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import socket
import time
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

from nnx_train.errors import ConfigError

__all__ = [
    "DISTRIBUTED_MODES",
    "DistributedSettings",
    "barrier",
    "detected_cluster",
    "host_array",
    "process_batch_rows",
    "start_distributed",
    "wait_for_coordinator",
]

DISTRIBUTED_MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """``config.distributed`` as a typed object (see the module docstring for the keys)."""

    initialize: str = "auto"
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1
    initialization_timeout_s: int = 300

    @classmethod
    def from_config(cls, section: ConfigDict) -> DistributedSettings:
        """Reads and checks ``config.distributed``.

        Raises:
          ConfigError: unknown ``initialize``, a partial explicit setting (some of
            ``coordinator_address``, ``num_processes``, ``process_id`` but not all three),
            ``process_id`` out of range or a non-positive timeout.
        """
        settings = cls(**{f.name: section[f.name] for f in dataclasses.fields(cls)})
        if settings.initialize not in DISTRIBUTED_MODES:
            raise ConfigError(
                f"distributed.initialize={settings.initialize!r}; use one of {DISTRIBUTED_MODES}."
            )
        given = {
            "coordinator_address": bool(settings.coordinator_address),
            "num_processes": settings.num_processes > 0,
            "process_id": settings.process_id >= 0,
        }
        if any(given.values()) and not all(given.values()):
            have = [f"distributed.{k}" for k, v in given.items() if v]
            missing = [f"distributed.{k}" for k, v in given.items() if not v]
            raise ConfigError(
                f"{', '.join(have)} set but not {', '.join(missing)}: give all three (process 0 "
                "at coordinator_address, ids 0 .. num_processes - 1), or none of them to detect "
                "the cluster (TPU pod, SLURM, Open MPI)."
            )
        if settings.explicit and settings.process_id >= settings.num_processes:
            raise ConfigError(
                f"distributed.process_id={settings.process_id} is not below "
                f"distributed.num_processes={settings.num_processes}; number the processes "
                "0 .. num_processes - 1 with 0 on the coordinator."
            )
        if settings.initialization_timeout_s <= 0:
            raise ConfigError(
                f"distributed.initialization_timeout_s={settings.initialization_timeout_s}; "
                "give a positive number of seconds."
            )
        return settings

    @property
    def explicit(self) -> bool:
        """True when the coordinator, process count and id are all given."""
        return bool(self.coordinator_address)


def detected_cluster() -> str | None:
    """The cluster JAX would join from the environment, or ``None`` on a lone machine.

    The same signals as ``jax._src.clusters`` (read here without importing private code):
    Cloud TPU VMs (``libtpu`` installed and TPU device files present; a one-host slice
    joins as one process), SLURM with several tasks (the five ``SLURM_*`` variables JAX reads) and Open
    MPI (``OMPI_MCA_orte_hnp_uri``) with several ranks.
    """
    env = os.environ
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(k in env for k in slurm) and int(env["SLURM_NTASKS"]) > 1:
        return "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "2")) > 1:
        return "Open MPI"
    has_chips = bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))
    if has_chips and importlib.util.find_spec("libtpu") is not None:
        return "Cloud TPU"
    return None


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Waits until ``address`` (``host:port``) accepts a TCP connection.

    ``jax.distributed.initialize`` aborts the process (a C++ check failure, no Python
    exception) when a non-coordinator cannot reach the coordinator in time; this probe turns
    that into a one-line error first.

    Raises:
      ConfigError: no connection within ``timeout_s`` (names the address and the timeout).
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # "[::1]:1234"
    if not host or not port.isdigit():
        raise ConfigError(
            f"distributed.coordinator_address={address!r} is not 'host:port' (e.g. "
            "'10.0.0.2:1234', the address of process 0)."
        )
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=max(min(remaining, 5), 0.1)):
                return
        except OSError as err:
            if remaining <= 0:
                raise ConfigError(
                    f"The coordinator {address} (distributed.coordinator_address) did not "
                    f"answer within {timeout_s:g} s (distributed.initialization_timeout_s): "
                    f"{err.strerror or err}. Start process 0 first, check the address and the "
                    "firewall, or raise the timeout."
                ) from err
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def start_distributed(section: ConfigDict) -> bool:
    """Joins the job as ``config.distributed`` says; call it before anything touches a device.

    Returns:
      Whether this process is now part of a multi-process JAX runtime (or already was).

    Raises:
      ConfigError: bad settings, ``initialize="on"`` without a cluster or explicit keys, an
        unreachable coordinator, or JAX already started on this process.
    """
    import nnx_sharding as ns

    settings = DistributedSettings.from_config(section)
    if jax.distributed.is_initialized():
        return True
    cluster = detected_cluster()
    if settings.initialize == "off" or (
        settings.initialize == "auto" and not settings.explicit and cluster is None
    ):
        return False
    if settings.explicit and settings.process_id != 0:
        wait_for_coordinator(settings.coordinator_address, settings.initialization_timeout_s)
    explicit = settings.explicit
    try:
        ns.initialize_distributed(
            coordinator_address=settings.coordinator_address if explicit else None,
            num_processes=settings.num_processes if explicit else None,
            process_id=settings.process_id if explicit else None,
            initialization_timeout_s=settings.initialization_timeout_s,
        )
    except RuntimeError as err:
        raise ConfigError(
            " ".join(str(err).split())
            + " (distributed.initialize="
            + repr(settings.initialize)
            + ": set distributed.coordinator_address, num_processes and process_id, or 'off'.)"
        ) from err
    return True


def process_batch_rows(mesh: Any, rules: Any, global_batch_size: int) -> np.ndarray:
    """Rows of a global batch of ``global_batch_size`` that this process's devices hold.

    `nnx_sharding.global_batch` (``jax.make_array_from_process_local_data``) places the
    process-local rows on the slices its devices address, in increasing order; the data
    pipeline must therefore read exactly these rows, in this order.

    Returns:
      Increasing int64 row indices; ``[p * b, (p + 1) * b)`` on a mesh listed process by
      process, every row when the batch axes do not span processes.
    """
    import nnx_sharding as ns

    sharding = ns.batch_sharding(1, mesh=mesh, rules=rules)
    rows: set[int] = set()
    for index in sharding.addressable_devices_indices_map((global_batch_size,)).values():
        rows.update(range(global_batch_size)[index[0]])
    return np.asarray(sorted(rows), np.int64)


def host_array(x: jax.Array | np.ndarray) -> np.ndarray:
    """The full value of ``x`` on this host, also when its shards live on other processes.

    A collective when ``x`` spans processes and is not replicated: every process must call
    it (``jax.experimental.multihost_utils.process_allgather``).
    """
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier ``name`` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
