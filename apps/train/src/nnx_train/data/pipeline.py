"""The input pipeline: a Grain dataset whose iterator state goes into every checkpoint.

``source -> this host's shard -> shuffle (reseeded per epoch) -> per-record augmentation ->
repeat forever -> batch``. Grain's iterator state is the index of the next batch, so a resumed
run continues the exact data order (REFERENCE §7.8: the seed's sampler restarted at 0).
Each host reads its own shard ``records[process_index::process_count]`` and yields its
``global_batch_size / process_count`` rows of every global batch.
"""

from __future__ import annotations

from typing import Any, Protocol

import grain
import numpy as np

from nnx_train.errors import ConfigError, DataError

__all__ = ["RecordSource", "make_iterator"]


class RecordSource(Protocol):
    """What the pipeline reads: a sized, indexable collection of ``{"x", "y"}`` records.

    Sources may also define ``augment(record, rng) -> record`` (random flips, posterior
    sampling), which runs once per record and epoch with a NumPy generator seeded by Grain.
    """

    shape: tuple[int, int, int]
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


def make_iterator(
    source: RecordSource,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    read_threads: int = 4,
    prefetch_batches: int = 4,
) -> Any:
    """A checkpointable iterator of host-local batches ``{"x": (b, H, W, C), "y": (b,)}``.

    Args:
      source: the records (`RecordSource`).
      global_batch_size: batch size summed over all hosts.
      seed: shuffle and augmentation seed (epochs are reshuffled deterministically).
      process_index: this host's index (``jax.process_index()``).
      process_count: number of hosts (``jax.process_count()``).
      read_threads: Grain reader threads (0 reads in the main thread).
      prefetch_batches: how many batches the reader threads keep ready.

    Returns:
      A ``grain.DatasetIterator``; ``get_state()`` / ``set_state()`` save and restore its
      position (`grain.checkpoint.CheckpointSave` stores it in an orbax checkpoint).

    Raises:
      DataError: empty source, or fewer records on this host than one batch.
      ConfigError: the global batch is not positive or does not divide among the hosts.
    """
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
    host_batch = global_batch_size // process_count
    dataset = grain.MapDataset.source(source)[process_index::process_count]
    if len(dataset) < host_batch:
        raise DataError(
            f"{source!r} gives host {process_index} only {len(dataset)} records, fewer than its "
            f"batch of {host_batch}; lower train.batch_size or use more data."
        )
    dataset = dataset.shuffle(seed=seed)
    augment = getattr(source, "augment", None)
    if augment is not None:
        dataset = dataset.random_map(augment, seed=seed + 1)
    dataset = dataset.repeat(None).batch(host_batch, drop_remainder=True)
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    return iter(dataset.to_iter_dataset(options))
