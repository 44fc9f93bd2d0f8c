"""What a run writes next to its checkpoints at start-up: config, versions, commit, devices.

``config.json`` (the resolved config, after overrides) and ``run_info.json`` (package
versions, git commit, command line, devices and mesh). Environment variables are never
written: credentials (``WANDB_API_KEY``, GCS keys) live only in the environment.
`prepare_workdir` creates the (local) workdir first and checks that it is writable.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any

import jax

import nnx_fid
from nnx_train.errors import ConfigError

__all__ = [
    "PACKAGES",
    "git_commit",
    "package_versions",
    "prepare_workdir",
    "run_info",
    "write_json_atomic",
    "write_run_files",
]

PACKAGES: tuple[str, ...] = (
    "nnx-train",
    "nnx-nets",
    "nnx-objectives",
    "nnx-samplers",
    "nnx-sharding",
    "nnx-fid",
    "nnx-weightconv",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "ml-collections",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in `PACKAGES` (``None`` when absent)."""
    return nnx_fid.package_versions(PACKAGES)


def git_commit(directory: str | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding the code."""
    return nnx_fid.git_commit(directory or os.path.dirname(os.path.abspath(__file__)))


def run_info(mesh: Any = None) -> dict[str, Any]:
    """Versions, commit, command line, host and device facts of this process."""
    devices = jax.devices()
    info: dict[str, Any] = {
        "argv": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_commit(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
    }
    if mesh is not None:
        info["mesh"] = {"axis_names": list(mesh.axis_names), "shape": dict(mesh.shape)}
    return info


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename,
    so that a reader (or a run killed mid-write) sees the old file or the new one, never a
    torn one (``os.replace`` is atomic within a POSIX file system)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json_atomic(path: str, value: Any, **dump_options: Any) -> None:
    """`write_text_atomic` of ``json.dumps(value, indent=2, **dump_options)``."""
    write_text_atomic(path, json.dumps(value, indent=2, **dump_options))


def write_run_files(workdir: str, config_dict: dict, mesh: Any = None) -> None:
    """Writes ``config.json`` and ``run_info.json`` into ``workdir`` (process 0 only, each
    atomically)."""
    if jax.process_index() != 0:
        return
    write_json_atomic(
        os.path.join(workdir, "config.json"), config_dict, sort_keys=True, default=str
    )
    write_json_atomic(os.path.join(workdir, "run_info.json"), run_info(mesh), default=str)


def prepare_workdir(workdir: str) -> str:
    """Creates ``workdir`` (local) and checks that it is writable."""
    if "://" in workdir:
        raise ConfigError(
            f"--workdir={workdir!r} must be a local folder (logs and pictures go there); put "
            "checkpoints on a bucket with --config.checkpoint.directory=gs://bucket/prefix."
        )
    workdir = os.path.abspath(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
        # One probe per process: several hosts may share the workdir (NFS).
        probe = os.path.join(workdir, f".write_test_{jax.process_index()}")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as err:
        raise ConfigError(
            f"The workdir {workdir} is not writable ({err.strerror}); choose another --workdir."
        ) from err
    return workdir
