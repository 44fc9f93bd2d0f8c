"""WebDataset tar shards: listing them and grouping tar members into samples.

WebDataset's convention (webdataset/webdataset, ``tariterators.base_plus_ext``): a sample is
a run of consecutive tar members that share a key, the member name up to the first dot of
its last path component; the rest is the extension, which names the field
(``n01440764_10026.jpg`` + ``n01440764_10026.cls`` -> key ``n01440764_10026``, fields
``jpg`` and ``cls``). ``.cls`` holds the class index as ASCII text. Shards are named
``shard-000000.tar`` ...; a shard list is written as a folder, a glob or a brace range
(``/data/shard-{000000..000146}.tar``).
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
from collections.abc import Iterator

from nnx_train.errors import DataError

__all__ = ["count_samples", "expand_shards", "read_samples", "split_key"]

_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def split_key(name: str) -> tuple[str, str] | None:
    """``"dir/key.ext.more"`` -> ``("dir/key", "ext.more")``; ``None`` without an extension."""
    match = _KEY_EXT.match(name)
    return (match.group(1), match.group(2).lower()) if match else None


def _expand_braces(pattern: str) -> list[str]:
    match = _BRACE_RANGE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first)
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        name
        for number in range(int(first), int(last) + 1)
        for name in _expand_braces(f"{head}{number:0{width}d}{tail}")
    ]


def expand_shards(path: str) -> list[str]:
    """The shard files of ``path``: a folder (its ``*.tar``), a brace range or a glob.

    Raises:
      DataError: nothing matches, or a listed shard does not exist.
    """
    if os.path.isdir(path):
        shards = sorted(glob.glob(os.path.join(path, "*.tar")))
    elif _BRACE_RANGE.search(path):
        shards = _expand_braces(path)
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(shards)} shards of {path!r} do not exist (first: "
                f"{missing[0]}); fix data.path's range."
            )
    else:
        shards = sorted(glob.glob(path))
    if not shards:
        raise DataError(
            f"No WebDataset shards at {path!r}; set data.path to a folder of .tar files, a glob "
            "or a range such as /data/shard-{000000..000146}.tar."
        )
    return shards


def _members(shard: str) -> Iterator[tuple[tarfile.TarFile, str, list[tarfile.TarInfo]]]:
    """Yields ``(archive, key, members)`` per sample, reading headers only."""
    try:
        with tarfile.open(shard, mode="r:") as archive:
            key, members = None, []
            for member in archive:
                parts = split_key(member.name) if member.isfile() else None
                if parts is None:
                    continue
                if parts[0] != key and members:
                    yield archive, key, members
                    members = []
                key = parts[0]
                members.append(member)
            if members:
                yield archive, key, members
            # tarfile stops silently at a header cut short; a complete archive ends with
            # (at least) two zero blocks after the last member (POSIX ustar).
            if os.path.getsize(shard) - archive.offset < tarfile.BLOCKSIZE:
                raise tarfile.ReadError(f"the file ends inside the header at {archive.offset}")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(
            f"Cannot read WebDataset shard {shard} ({type(err).__name__}: {err}); it is "
            "truncated or not a tar file: re-copy or remove it."
        ) from err


def read_samples(shard: str, *, skip: int = 0) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yields ``(key, {extension: bytes})`` for the samples of ``shard`` in tar order.

    Args:
      shard: a tar file.
      skip: samples to pass over first (their data is not read: resume is cheap).

    Raises:
      DataError: the shard cannot be opened or is truncated (names the file).
    """
    for index, (archive, key, members) in enumerate(_members(shard)):
        if index < skip:
            continue
        try:
            fields = {split_key(m.name)[1]: archive.extractfile(m).read() for m in members}
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(
                f"Cannot read sample {key} of WebDataset shard {shard} ({err}); the shard is "
                "truncated: re-copy or remove it."
            ) from err
        yield key, fields


def count_samples(shard: str) -> int:
    """Number of samples (distinct consecutive keys) in ``shard``, from the headers."""
    return sum(1 for _ in _members(shard))
