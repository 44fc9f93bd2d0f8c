"""Metrics sinks: a JSONL file always, Weights & Biases in the configured mode.

``logging.wandb_mode`` decides (``WANDB_MODE`` in the environment, wandb's own switch, wins
when set): ``disabled`` (no wandb), ``offline`` (files under ``workdir/wandb``, upload later
with ``wandb sync``; a key is not needed and not used) or ``online``, which needs a key
(``WANDB_API_KEY`` or ``wandb login``) and the wandb server: `check_wandb` refuses ``online``
without either, in one line, before anything is built (it does not fall back to offline).
wandb is imported lazily (1-2 s) and only when used; the key is read by wandb from the
environment and never written by this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from typing import Any
from urllib.parse import urlparse

import numpy as np

__all__ = ["MetricsLogger", "check_wandb", "read_jsonl", "wandb_mode"]

log = logging.getLogger(__name__)

WANDB_MODES: tuple[str, ...] = ("online", "offline", "disabled")
CONNECT_TIMEOUT_S = 5.0


def wandb_mode(configured: str) -> str:
    """The configured mode; ``WANDB_MODE`` in the environment wins when it names a mode. A
    ``WANDB_API_KEY`` changes nothing: it is only used in ``online`` mode."""
    if configured not in WANDB_MODES:
        from nnx_train.errors import ConfigError

        raise ConfigError(f"logging.wandb_mode={configured!r}; use one of {WANDB_MODES}.")
    if os.environ.get("WANDB_MODE") in WANDB_MODES:
        return os.environ["WANDB_MODE"]
    return configured


def _has_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))  # where `wandb login` writes
    try:
        with open(netrc) as handle:
            return host in handle.read()
    except OSError:
        return False


def check_wandb(configured: str) -> str:
    """The effective mode; for ``online``, checks the key and that the server answers.

    Raises:
      ConfigError: ``online`` without a key, or the wandb server cannot be reached within
        `CONNECT_TIMEOUT_S` (``WANDB_BASE_URL``, default https://api.wandb.ai).
    """
    from nnx_train.errors import ConfigError

    mode = wandb_mode(configured)
    if mode != "online":
        return mode
    fix = "or set --config.logging.wandb_mode=offline (upload later with `wandb sync`)"
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    if not _has_key(str(url.hostname)):
        raise ConfigError(
            f"wandb_mode='online' needs WANDB_API_KEY or `wandb login`; set one, {fix}."
        )
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(
            f"wandb_mode='online' but the wandb server {url.hostname}:{port} cannot be reached "
            f"({err.strerror or err}); check the network {fix}."
        ) from None
    return mode


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_jsonl(path: str) -> list[dict]:
    """All records of a metrics file (missing file: empty list).

    The file is append-only; a run killed while appending leaves a torn last line, which
    is skipped with a warning (a torn line elsewhere is skipped the same way).
    """
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning(
                    "Skipping line %d of %s: not a complete JSON record (a run was killed "
                    "while writing it).",
                    number,
                    path,
                )
    return records


class MetricsLogger:
    """Writes ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl`` and to wandb.

    Only process 0 writes. Args:
      workdir: run folder.
      config: the resolved config as a dict (sent to wandb).
      project: wandb project.
      mode: ``logging.wandb_mode`` (`wandb_mode` decides the effective mode).
      run_name: wandb run name.
      enabled: False on processes other than 0.
    """

    def __init__(
        self,
        workdir: str,
        *,
        config: dict,
        project: str,
        mode: str,
        run_name: str,
        enabled: bool = True,
    ) -> None:
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self.mode = wandb_mode(mode)
        if enabled and _torn(self.path):
            # A run killed while appending left a line without its newline: end it, so that
            # this run's first record starts a line of its own (`read_jsonl` skips the torn one).
            with open(self.path, "a") as handle:
                handle.write("\n")
        self._run = None
        if enabled and self.mode != "disabled":
            import wandb  # lazy: 1-2 s import

            self._run = wandb.init(
                project=project,
                name=run_name,
                mode=self.mode,
                dir=workdir,
                config=config,
                resume="allow",
                id=_run_id(workdir),
            )

    def log(self, step: int, metrics: dict) -> None:
        """Appends one record (numpy / jax scalars are converted)."""
        if not self.enabled:
            return
        record = {"step": int(step), **_plain(dict(metrics))}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._run is not None:
            self._run.log({k: v for k, v in record.items() if k != "step"}, step=int(step))

    def log_image(self, step: int, name: str, path: str) -> None:
        """Sends a PNG already written to disk to wandb (no-op without wandb)."""
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Image(path)}, step=int(step))

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def _torn(path: str) -> bool:
    """Whether ``path`` exists, is not empty and does not end with a newline."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _run_id(workdir: str) -> str:
    """A stable wandb run id per workdir, so a resumed run continues the same wandb run."""
    path = os.path.join(workdir, "wandb_run_id.txt")
    if os.path.exists(path):
        with open(path) as handle:
            return handle.read().strip()
    import uuid

    from nnx_train.provenance import write_text_atomic

    run_id = uuid.uuid4().hex[:12]
    write_text_atomic(path, run_id)
    return run_id
