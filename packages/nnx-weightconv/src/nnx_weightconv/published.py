"""The published weight and data files the project reads, with the SHA-256 each is checked against.

One table (``PUBLISHED_FILES``) for the loaders and ``tools/fetch_weights.py``; the page
``docs/weights_and_data.md`` lists the same files with their licences. A hash is pinned only
where its publisher shows it: Hugging Face shows the SHA-256 of every Git LFS file on the
file's page ("SHA256:", the ``oid sha256:`` of its pointer); ``hash_source`` names that page.

:func:`read_state_dict` calls :func:`check_published_sha256` on every file it reads: a file
whose name is one of the table's ``file_name`` values (the names ``fetch_weights.py`` and the
configs use) is hashed once per (path, size, mtime), and a different hash warns once, naming
the expected one. Other names cost nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import warnings

__all__ = ["PUBLISHED_FILES", "PublishedFile", "check_published_sha256", "file_sha256"]

_HF = "https://huggingface.co/{repo}/resolve/main/{path}"
_HF_PAGE = "https://huggingface.co/{repo}/blob/main/{path}"
_RAE = "nyu-visionx/RAE-collections"


@dataclasses.dataclass(frozen=True)
class PublishedFile:
    """One published file.

    Attributes:
      url: where to download it (plain HTTPS, no token).
      file_name: its name in the download folder (``fetch_weights.py --dir``); the hash check
        keys on it.
      sha256: the published SHA-256 (64 hex digits), or None where no publisher shows one.
      hash_source: where ``sha256`` is published (a URL or a sentence), None when unpinned.
    """

    url: str
    file_name: str
    sha256: str | None = None
    hash_source: str | None = None


def _hf(repo: str, path: str, file_name: str, sha256: str | None = None) -> PublishedFile:
    source = None if sha256 is None else _HF_PAGE.format(repo=repo, path=path)
    return PublishedFile(_HF.format(repo=repo, path=path), file_name, sha256, source)


PUBLISHED_FILES: dict[str, PublishedFile] = {
    "inception": PublishedFile(
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth",
        "pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        "the release file name carries its first 8 hex digits (torch-hub's hash prefix)",
    ),
    "sd-vae-ft-ema": _hf(
        "stabilityai/sd-vae-ft-ema",
        "diffusion_pytorch_model.safetensors",
        "sd-vae-ft-ema.safetensors",
        "32db726da04f06c1b6b14c0043ce115cc87a501482945c5add89a40d838fcb46",
    ),
    "sd-vae-ft-mse": _hf(
        "stabilityai/sd-vae-ft-mse",
        "diffusion_pytorch_model.safetensors",
        "sd-vae-ft-mse.safetensors",
        "a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
    ),
    "dinov2-base": _hf(
        "facebook/dinov2-base",
        "model.safetensors",
        "dinov2-base.safetensors",
        "d73036b56966966d07975d696bde331762f37297e2f095de8cea0040c3aa0841",
    ),
    "dinov2-with-registers-base": _hf(
        "facebook/dinov2-with-registers-base",
        "model.safetensors",
        "dinov2-with-registers-base.safetensors",
    ),
    "rae-decoder": _hf(
        _RAE, "decoders/dinov2/wReg_base/ViTXL_n08/model.pt", "rae_decoder_ViTXL_n08.pt"
    ),
    "rae-stats": _hf(_RAE, "stats/dinov2/wReg_base/imagenet1k/stat.pt", "rae_stat.pt"),
    "rae-dit-dh-xl": _hf(
        _RAE, "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt", "rae_DiTDH-XL.pt"
    ),
    "rae-dit-dh-s": _hf(
        _RAE,
        "DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt",
        "rae_DiTDH-S_ep14.pt",
    ),
    "adm-reference-256": PublishedFile(
        "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/"
        "VIRTUAL_imagenet256_labeled.npz",
        "VIRTUAL_imagenet256_labeled.npz",
    ),
}

# (resolved path, size, mtime_ns) -> hex digest; and the (key, expected) pairs warned about.
_DIGESTS: dict[tuple[str, int, int], str] = {}
_WARNED: set[tuple[tuple[str, int, int], str]] = set()


def file_sha256(path: str | pathlib.Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (cached per path, size and mtime)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _pinned(*, file_name: str | None = None, sha256: str | None = None) -> PublishedFile | None:
    """The pinned entry with this file name (or this hash), if any."""
    for entry in PUBLISHED_FILES.values():
        named = file_name in (None, entry.file_name)
        if entry.sha256 is not None and named and sha256 in (None, entry.sha256):
            return entry
    return None


def check_published_sha256(
    path: str | pathlib.Path, expected: str | None = None, *, every_time: bool = False
) -> str | None:
    """Warns when ``path`` is not the published file it is named after.

    Args:
      path: a file that exists.
      expected: the SHA-256 to compare with; None looks the file name up in
        ``PUBLISHED_FILES`` (a name that is not there, or not pinned, is not hashed).
      every_time: warn on every call instead of once per file (``nnx_fid.load_inception``).

    Returns:
      The file's SHA-256, or None when nothing was compared.

    Warns:
      UserWarning: "<path> has SHA-256 <actual>, not the published <expected> of <name>".
    """
    if expected is None:
        entry = _pinned(file_name=pathlib.Path(path).name)
        if entry is None:
            return None
        expected = entry.sha256
    else:
        entry = _pinned(sha256=expected)
    actual = file_sha256(path)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if actual != expected and (every_time or (key, expected) not in _WARNED):
        _WARNED.add((key, expected))
        what = f"{entry.file_name} ({entry.url})" if entry is not None else "the expected file"
        warnings.warn(
            f"{str(path)!r} has SHA-256 {actual}, not the published {expected} of {what}; "
            "a re-saved or converted file may hold the same tensors, but results may not "
            "match published ones (download it again with tools/fetch_weights.py)",
            stacklevel=3,
        )
    return actual
