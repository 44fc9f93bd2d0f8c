"""The evaluation sampling loop: class-balanced labels, device-sharded batches, deterministic.

Random labels cost about 0.1 FID against class-balanced ones (reported upstream; not
re-measured here), so labels are balanced: every class appears ``N // C`` times, and the
``N mod C`` extra labels go to distinct classes chosen at random; the whole list is then shuffled. With ``N`` divisible by ``C`` every
class appears exactly ``N / C`` times. Labels and per-batch keys depend only on ``seed``.

Batches have a fixed global size (the last one is padded with repeated labels and the padded
images are dropped, never counted), the labels are sharded over the mesh's data axis, and the
generator's uint8 output is gathered to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from nnx_fid.images import check_uint8_images

Generate = Callable[[jax.Array, jax.Array], jax.Array]


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
    num_batches = math.ceil(num_samples / batch_size)
    padded = np.resize(labels, num_batches * batch_size)  # repeats labels cyclically
    base_key = jax.random.PRNGKey(seed)
    images = []
    with tqdm(total=num_samples, disable=not progress, desc="sampling", unit="img") as bar:
        for index in range(num_batches):
            batch_labels = padded[index * batch_size : (index + 1) * batch_size]
            device_labels = jax.device_put(batch_labels, sharding)
            batch = _gather(generate(jax.random.fold_in(base_key, index), device_labels))
            check_uint8_images(batch, name="generate(key, labels) output")
            if batch.shape[0] != batch_size:
                raise ValueError(
                    f"generate returned {batch.shape[0]} images for {batch_size} labels"
                )
            keep = min(batch_size, num_samples - index * batch_size)
            images.append(batch[:keep])
            bar.update(keep)
    return np.concatenate(images), labels
