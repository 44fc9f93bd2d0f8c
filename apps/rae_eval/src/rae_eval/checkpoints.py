"""The checkpoint files a run needs, where each is published, and the errors when they are wrong.

A run checks every file it will read *before* building anything, and stops with one
:class:`MissingCheckpointError` that names each missing file, its role, the path it was looked
for at, where it is published and the command that fetches it. A file that exists but does not
fit the configured network raises :class:`CheckpointMismatchError` naming the file and every
offending key (from nnx-weightconv's ``ConversionError``).

Published locations (Zheng et al. 2025, RAE release):

=================  ===============================================================================
role               published at
=================  ===============================================================================
encoder            HF ``facebook/dinov2-with-registers-base``: ``model.safetensors``
decoder            HF ``nyu-visionx/RAE-collections``: ``decoders/dinov2/wReg_base/ViTXL_n08/model.pt``
latent_stats       HF ``nyu-visionx/RAE-collections``: ``stats/dinov2/wReg_base/imagenet1k/stat.pt``
stage2             HF ``nyu-visionx/RAE-collections``:
                   ``DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt``
guide              HF ``nyu-visionx/RAE-collections``:
                   ``DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt``
inception          pytorch-fid release ``pt_inception-2015-12-05-6726825d.pth``
reference_batch    ADM ``VIRTUAL_imagenet256_labeled.npz`` (openaipublic blob store)
=================  ===============================================================================
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Mapping

__all__ = [
    "CheckpointFile",
    "CheckpointMismatchError",
    "MissingCheckpointError",
    "fetch_command",
    "require_files",
]


class MissingCheckpointError(FileNotFoundError):
    """One or more checkpoint files are absent; the message names each and where to get it."""

    def __init__(self, files: list[CheckpointFile]):
        self.files = files
        lines = [f"{len(files)} checkpoint file(s) missing:"]
        for file in files:
            lines.append(f"  - {file.role}: {file.path}")
            lines.append(f"      published at {file.url}")
            lines.append(f"      fetch with: {fetch_command(file)}")
        lines.append(
            "Set config.checkpoints.directory (or the per-file paths) to where the files are, "
            "or use a config with weights='random' for a run without published weights."
        )
        super().__init__("\n".join(lines))


class CheckpointMismatchError(ValueError):
    """A checkpoint file does not fit the network or shape the config describes."""

    def __init__(self, file: CheckpointFile, detail: str):
        self.file = file
        super().__init__(
            f"{file.role} checkpoint {str(file.path)!r} does not match the configured network "
            f"(published at {file.url}); check the config section for '{file.role}' and that the "
            f"file is the published one:\n{detail}"
        )


@dataclasses.dataclass(frozen=True)
class CheckpointFile:
    """One file a run reads.

    Attributes:
      role: what it is for (``"decoder"``, ``"stage2"``, ...), the config key under
        ``config.checkpoints``.
      path: where this run looks for it.
      url: where it is published: ``hf://<owner>/<repo>/<path in repo>`` or an ``https://`` URL.
    """

    role: str
    path: pathlib.Path
    url: str

    @classmethod
    def from_config(
        cls, role: str, entry: Mapping, directory: str | pathlib.Path
    ) -> CheckpointFile:
        """Build from a ``config.checkpoints.<role>`` entry ``{path, url}``.

        A relative ``path`` is taken relative to ``directory``.
        """
        path = pathlib.Path(entry["path"]).expanduser()
        if not path.is_absolute():
            path = pathlib.Path(directory).expanduser() / path
        return cls(role=role, path=path, url=str(entry["url"]))


def fetch_command(file: CheckpointFile) -> str:
    """A shell command that downloads ``file`` to ``file.path``.

    ``hf://owner/repo/sub/dir/name`` becomes ``hf download owner/repo sub/dir/name --local-dir
    <root>`` where ``<root>`` is ``file.path`` with the in-repo path removed (when the local path
    ends with the in-repo path, as with ``hf download ... --local-dir models``); any other URL
    becomes ``curl -L --create-dirs -o <path> <url>``.
    """
    if file.url.startswith("hf://"):
        owner, repo, *inside = file.url[len("hf://") :].split("/")
        remote = "/".join(inside)
        local = file.path.as_posix()
        if local.endswith("/" + remote):
            root = local[: -len(remote) - 1]
        else:
            root = f"<dir>  (then move <dir>/{remote} to {local})"
        return f"hf download {owner}/{repo} {remote} --local-dir {root}"
    return f"curl -L --create-dirs -o {file.path} {file.url}"


def require_files(files: Iterable[CheckpointFile]) -> list[CheckpointFile]:
    """Check that every file exists; raise one error naming each missing file.

    Args:
      files: the files a run will read.

    Returns:
      The files, unchanged, when all exist.

    Raises:
      MissingCheckpointError: naming each missing file, its role, path and published location.
    """
    files = list(files)
    missing = [file for file in files if not file.path.is_file()]
    if missing:
        raise MissingCheckpointError(missing)
    return files
