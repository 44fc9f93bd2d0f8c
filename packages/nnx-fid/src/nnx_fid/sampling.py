"""The sampling loop of every app and tool: fixed-size batches, class-balanced labels, deterministic.

`sample_in_batches` is the one loop: it walks a list of global sample indices in batches of
one static size (the last batch padded by repeating its last index, the padded rows dropped),
so a jitted sampler compiles once; the caller's ``sample_batch(indices, labels)`` decides where
each sample's noise comes from (per index, or per batch number: ``indices[0] // batch_size``).
`generate_samples` (FID evaluation), apps/train's pictures and evaluation
(``nnx_train.run.Run.pixel_batches``) and apps/rae_eval's resumable shards all run it.

Random labels cost about 0.1 FID against class-balanced ones (reported upstream; not
re-measured here), so labels are balanced: every class appears ``N // C`` times, and the
``N mod C`` extra labels go to distinct classes chosen at random; the whole list is then shuffled. With ``N`` divisible by ``C`` every
class appears exactly ``N / C`` times. Labels and per-batch keys depend only on ``seed``.

Batches have a fixed global size (the last one is padded with repeated labels and the padded
images are dropped, never counted), the labels are sharded over the mesh's data axis, and the
generator's uint8 output is gathered to the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from nnx_fid.images import check_uint8_images

Generate = Callable[[jax.Array, jax.Array], jax.Array]
SampleBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]


def balanced_labels(num_samples: int, num_classes: int, *, seed: int) -> np.ndarray:
    """Class-balanced, shuffled labels (see the module docstring).

    Args:
      num_samples: how many labels.
      num_classes: labels are in ``[0, num_classes)``.
      seed: the only source of randomness.

    Returns:
      ``(num_samples,)`` int32.
    """
    if num_samples < 1 or num_classes < 1:
        raise ValueError(f"need positive sizes, got {num_samples} samples, {num_classes} classes")
    rng = np.random.default_rng(seed)
    rounds, extra = divmod(num_samples, num_classes)
    labels = np.concatenate(
        [np.tile(np.arange(num_classes), rounds), rng.permutation(num_classes)[:extra]]
    )
    return rng.permutation(labels).astype(np.int32)


def padded_batches(indices: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Splits ``indices`` into batches of exactly ``batch_size`` rows.

    Args:
      indices: ``(N,)`` global sample indices, in order.
      batch_size: rows per batch (positive).

    Yields:
      ``(padded (batch_size,) int64, count)``: the last batch repeats its last index to fill
      the static size; only its first ``count`` rows are real.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    indices = np.asarray(indices, np.int64)
    for offset in range(0, indices.size, batch_size):
        batch = indices[offset : offset + batch_size]
        count = batch.size
        yield np.concatenate([batch, np.repeat(batch[-1:], batch_size - count)]), count


def sample_in_batches(
    sample_batch: SampleBatch,
    labels: np.ndarray,
    *,
    batch_size: int,
    indices: np.ndarray | None = None,
    bar: tqdm | None = None,
) -> Iterator[np.ndarray]:
    """Runs ``sample_batch`` over ``indices`` in fixed-size batches; yields the real rows.

    Args:
      sample_batch: ``(indices (B,) int64, labels (B,) int32) -> (B, ...)`` host array, called
        with exactly ``batch_size`` rows; must be deterministic in its arguments.
      labels: ``(num_samples,)`` int32 label of every global sample index.
      batch_size: the static batch size (the global batch on a mesh).
      indices: the global indices to sample (default: all of ``labels``, in order).
      bar: an open progress bar advanced by the number of real rows of each batch.

    Yields:
      ``(count, ...)`` arrays: the outputs for consecutive slices of ``indices``.
    """
    labels = np.asarray(labels)
    if indices is None:
        indices = np.arange(labels.shape[0])
    for padded, count in padded_batches(indices, batch_size):
        out = np.asarray(sample_batch(padded, labels[padded]))
        if out.shape[0] != batch_size:
            raise ValueError(f"sample_batch returned {out.shape[0]} rows for {batch_size} labels")
        if bar is not None:
            bar.update(count)
        yield out[:count]


def _gather(array: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


def generate_samples(
    generate: Generate,
    *,
    num_samples: int,
    num_classes: int,
    batch_size: int,
    seed: int,
    mesh: Mesh | None = None,
    data_axis: str = "data",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num_samples`` class-balanced samples from ``generate``.

    Args:
      generate: ``generate(key, labels (B,) int32) -> (B, H, W, 3) uint8``; typically a jitted
        sampler followed by :func:`nnx_fid.to_uint8`. Its key for batch ``i`` is
        ``fold_in(PRNGKey(seed), i)``.
      num_samples: total samples (the last batch is padded and trimmed).
      num_classes: number of classes (labels ``[0, num_classes)``).
      batch_size: global batch size; a multiple of the mesh's data-axis size.
      seed: seed of the labels and keys.
      mesh: optional mesh; labels are sharded over ``data_axis``.
      data_axis: mesh axis name for the batch.
      progress: show a tqdm bar.

    Returns:
      ``(images (N, H, W, 3) uint8, labels (N,) int32)`` on the host.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sharding = None
    if mesh is not None:
        if data_axis not in mesh.axis_names:
            raise ValueError(f"mesh has axes {mesh.axis_names}, not the data axis {data_axis!r}")
        shards = mesh.shape[data_axis]
        if batch_size % shards:
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of the {shards} devices on mesh axis "
                f"{data_axis!r}; choose a multiple"
            )
        sharding = NamedSharding(mesh, PartitionSpec(data_axis))
    labels = balanced_labels(num_samples, num_classes, seed=seed)
    base_key = jax.random.PRNGKey(seed)

    def sample_batch(indices: np.ndarray, batch_labels: np.ndarray) -> np.ndarray:
        key = jax.random.fold_in(base_key, int(indices[0]) // batch_size)  # the batch number
        batch = _gather(generate(key, jax.device_put(batch_labels.astype(np.int32), sharding)))
        check_uint8_images(batch, name="generate(key, labels) output")
        return batch

    with tqdm(total=num_samples, disable=not progress, desc="sampling", unit="img") as bar:
        images = list(sample_in_batches(sample_batch, labels, batch_size=batch_size, bar=bar))
    return np.concatenate(images), labels
