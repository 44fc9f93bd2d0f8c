"""What produced a result: package versions and the git commit of the code.

FID moves with library versions and with the code that generated the samples, so every
result file written in the workspace (the apps' run files, ``tools/`` reports) records both
through these two functions.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from collections.abc import Iterable

__all__ = ["git_commit", "package_versions"]


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` when absent)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(directory: str | os.PathLike) -> dict[str, str | bool | None]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding
    ``directory`` (``None`` outside a repository or without git; tracked files only)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
