"""The input pipeline: a Grain dataset whose iterator state goes into every checkpoint.

One global order for the whole job, then each process reads only its rows of it::

    source -> shuffle (seed, reshuffled per epoch) -> per-record augmentation (seed + 1)
           -> repeat forever -> global batches of ``global_batch_size`` -> this process's rows

Every process builds the same global order (same seeds, index-level shuffle: nothing is read
to shuffle), so the data a run sees depends on the global batch only, not on the number of
processes. Process ``p`` of ``P`` takes rows ``[p * b, (p + 1) * b)`` of every global batch
(``b = global_batch_size / P``; or the rows its devices hold, `make_iterator`'s
``batch_rows``) and reads only those records. Augmentation draws from a generator seeded by
the element's global position (Grain's ``random_map``), so a record is augmented the same way
whichever process reads it. With one process the order is exactly the one of
``MapDataset.source -> shuffle -> random_map -> repeat -> batch``.

Grain's iterator state is the index of the next local batch, equal on every process, so a
resumed run continues the exact data order (willisma/diffuse_nnx restarted at 0).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol

import grain
import numpy as np

from nnx_train.errors import ConfigError, DataError

__all__ = ["RecordSource", "global_order", "make_iterator"]


class RecordSource(Protocol):
    """What the pipeline reads: a sized, indexable collection of ``{"x", "y"}`` records.

    Sources may also define ``augment(record, rng) -> record`` (random flips, posterior
    sampling), which runs once per record and epoch with a NumPy generator seeded by Grain.
    """

    shape: tuple[int, int, int]
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


def global_order(source: RecordSource, *, seed: int) -> grain.MapDataset:
    """The job-wide stream of augmented records: element ``k`` is the ``k``-th record of the
    concatenated global batches (lazy: indexing reads one record).

    Epoch ``e`` is a permutation of the source (Grain's index shuffle with seed ``seed + e``);
    the augmentation generator of element ``k`` is ``Philox(seed + 1)`` at position ``k``.
    """
    dataset = grain.MapDataset.source(source).shuffle(seed=seed)
    augment = getattr(source, "augment", None)
    if augment is not None:
        dataset = dataset.random_map(augment, seed=seed + 1)
    return dataset.repeat(None)


class _ProcessRows:
    """Local position ``j`` -> the record at global position ``(j // b) * B + rows[j % b]``."""

    def __init__(self, order: grain.MapDataset, rows: Sequence[int], global_batch_size: int):
        self.order = order
        self.rows = tuple(int(r) for r in rows)
        self.global_batch_size = global_batch_size

    def __call__(self, position: int) -> dict[str, np.ndarray]:
        batch, row = divmod(position, len(self.rows))
        return self.order[batch * self.global_batch_size + self.rows[row]]


def _check_rows(rows: Sequence[int], global_batch_size: int) -> tuple[int, ...]:
    rows = tuple(int(r) for r in rows)
    if not rows or list(rows) != sorted(set(rows)) or rows[0] < 0 or rows[-1] >= global_batch_size:
        raise ConfigError(
            f"batch_rows={rows} must be increasing, distinct row indices in "
            f"[0, {global_batch_size}) (the rows of the global batch this process holds)."
        )
    return rows


def _check_sizes(source: RecordSource, global_batch_size: int, process_count: int) -> None:
    if global_batch_size <= 0:
        raise ConfigError(
            f"train.batch_size={global_batch_size}; set it to a positive number of images."
        )
    if global_batch_size % process_count:
        raise ConfigError(
            f"train.batch_size={global_batch_size} does not divide among {process_count} hosts; "
            f"use a multiple of {process_count}."
        )
    if len(source) == 0:
        raise DataError(f"The dataset {source!r} is empty; point data.path at a folder with data.")
    if len(source) < global_batch_size:
        raise DataError(
            f"{source!r} has only {len(source)} records, fewer than its batch of "
            f"{global_batch_size}; lower train.batch_size or use more data."
        )


def make_iterator(
    source: RecordSource,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    read_threads: int = 4,
    prefetch_batches: int = 4,
    batch_rows: Sequence[int] | None = None,
) -> Any:
    """A checkpointable iterator of process-local batches ``{"x": (b, H, W, C), "y": (b,)}``.

    Args:
      source: the records (`RecordSource`).
      global_batch_size: batch size summed over all processes (``B``).
      seed: shuffle and augmentation seed (epochs are reshuffled deterministically).
      process_index: this process's index (``jax.process_index()``).
      process_count: number of processes (``jax.process_count()``).
      read_threads: Grain reader threads (0 reads in the main thread).
      prefetch_batches: how many batches the reader threads keep ready.
      batch_rows: the rows of each global batch this process yields, increasing; default
        ``range(p * b, (p + 1) * b)`` with ``b = B / process_count``. The trainer passes the
        rows its devices hold in the batch sharding (`nnx_train.multihost.process_batch_rows`),
        which is this default on meshes whose devices are listed process by process.

    Returns:
      A ``grain.DatasetIterator``; ``get_state()`` / ``set_state()`` save and restore its
      position (`grain.checkpoint.CheckpointSave` stores it in an orbax checkpoint).

    Raises:
      DataError: empty source, or fewer records than one global batch.
      ConfigError: the global batch is not positive or does not divide among the processes.
    """
    _check_sizes(source, global_batch_size, process_count)
    if batch_rows is None:
        local = global_batch_size // process_count
        batch_rows = range(process_index * local, (process_index + 1) * local)
    rows = _check_rows(batch_rows, global_batch_size)
    read = _ProcessRows(global_order(source, seed=seed), rows, global_batch_size)
    # As many local positions as the repeated order has whole global batches.
    num_positions = (sys.maxsize // global_batch_size) * len(rows)
    dataset = grain.MapDataset.range(num_positions).map(read)
    dataset = dataset.batch(len(rows), drop_remainder=True)
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    return iter(dataset.to_iter_dataset(options))
