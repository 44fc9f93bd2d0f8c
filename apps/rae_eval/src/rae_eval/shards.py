"""Generated samples on disk: fixed-size shard files written atomically, so a run can resume.

Sample ``i`` of a run always lands in shard ``i // shard_size``; a shard file exists only
when it is complete (written to a temporary name, then renamed). A resumed run therefore
recomputes exactly the shards that are absent. ``fingerprint.json`` records what produced the
shards (seed, labels, models, sampler, guidance, ...); resuming with a different fingerprint
is refused rather than mixing samples of two setups.

Shard format: ``shard_00012.npz`` with ``images`` (uint8 ``(n, H, W, 3)``), ``labels``
(int32 ``(n,)``) and ``indices`` (int64 ``(n,)``, the global sample indices). The assembled
ADM sample file has ``arr_0`` (images) and ``arr_1`` (labels), as the ADM evaluator reads.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import tempfile
from collections.abc import Mapping

import numpy as np

__all__ = ["FingerprintMismatchError", "ShardStore", "atomic_write_bytes"]


class FingerprintMismatchError(RuntimeError):
    """Existing shards were produced by a different setup than the one now configured."""


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


class ShardStore:
    """A folder of sample shards covering global indices ``[0, num_samples)``.

    Args:
      directory: folder of the shard files (created on first write).
      num_samples: total number of samples of the run.
      shard_size: samples per shard (the last shard may be shorter).
    """

    def __init__(self, directory: str | pathlib.Path, *, num_samples: int, shard_size: int):
        if num_samples < 1 or shard_size < 1:
            raise ValueError(
                f"num_samples ({num_samples}) and shard_size ({shard_size}) must be positive"
            )
        self.directory = pathlib.Path(directory)
        self.num_samples = num_samples
        self.shard_size = shard_size

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def shard_range(self, shard: int) -> range:
        """Global sample indices held by ``shard``."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.num_samples))

    def path(self, shard: int) -> pathlib.Path:
        return self.directory / f"shard_{shard:05d}.npz"

    def missing_shards(self) -> list[int]:
        """Shards whose file is absent (an existing file is always complete)."""
        return [s for s in range(self.num_shards) if not self.path(s).is_file()]

    def check_fingerprint(self, fingerprint: Mapping) -> None:
        """Record ``fingerprint`` on the first call; refuse a different one on resume.

        Raises:
          FingerprintMismatchError: naming the entries that differ.
        """
        path = self.directory / "fingerprint.json"
        current = json.loads(json.dumps(dict(fingerprint), sort_keys=True, default=str))
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored != current:
                keys = sorted(
                    k for k in set(stored) | set(current) if stored.get(k) != current.get(k)
                )
                details = "; ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in keys)
                raise FingerprintMismatchError(
                    f"the shards in {str(self.directory)!r} were generated with a different "
                    f"setup ({details}); use a new --workdir, or delete that folder to start over"
                )
            return
        atomic_write_bytes(path, json.dumps(current, indent=2, sort_keys=True).encode())

    def write(self, shard: int, images: np.ndarray, labels: np.ndarray) -> None:
        """Write one complete shard atomically.

        Args:
          shard: shard number.
          images: uint8 ``(n, H, W, 3)`` with ``n = len(shard_range(shard))``.
          labels: int ``(n,)`` class labels of those samples.
        """
        indices = np.asarray(self.shard_range(shard), np.int64)
        if images.dtype != np.uint8 or images.shape[0] != indices.size:
            raise ValueError(
                f"shard {shard} needs {indices.size} uint8 images, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if labels.shape != (indices.size,):
            raise ValueError(f"shard {shard} needs {indices.size} labels, got {labels.shape}")
        buffer = _npz_bytes(images=images, labels=labels.astype(np.int32), indices=indices)
        atomic_write_bytes(self.path(shard), buffer)

    def read(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` of one shard, checked against its expected indices."""
        with np.load(self.path(shard)) as data:
            images, labels, indices = data["images"], data["labels"], data["indices"]
        expected = np.asarray(self.shard_range(shard), np.int64)
        if not np.array_equal(indices, expected):
            raise ValueError(
                f"{self.path(shard)} holds indices {indices[:3]}... but shard {shard} covers "
                f"{expected[:3]}...; the shard size changed: use a new --workdir"
            )
        return images, labels

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples in index order: ``(images (N, H, W, 3) uint8, labels (N,) int32)``."""
        missing = self.missing_shards()
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} shard(s) not generated yet in {str(self.directory)!r}: "
                f"{missing[:10]}; run generation first"
            )
        parts = [self.read(s) for s in range(self.num_shards)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def assemble(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the ADM sample file (``arr_0`` images, ``arr_1`` labels) at ``path``."""
        images, labels = self.read_all()
        path = pathlib.Path(path)
        atomic_write_bytes(path, _npz_bytes(arr_0=images, arr_1=labels))
        return path


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
