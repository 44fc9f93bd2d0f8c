"""The resumable generation loop: fill every missing shard, batch by batch, with a progress bar.

The batches are `nnx_fid.sample_in_batches`, the loop every app shares; this module adds the
shards. It is independent of the models: it calls ``sample_batch(indices, labels)`` which must
return uint8 images for those global sample indices and be deterministic in them (the noise
of sample ``i`` is drawn from ``fold_in(key(seed), i)`` in :mod:`rae_eval.sampling`). Because
each sample depends only on its index and label, a resumed run, a run with another batch size
and a run on another number of devices produce the same samples (up to floating-point
reassociation across different batch shapes).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from tqdm import tqdm

from nnx_fid.sampling import SampleBatch, sample_in_batches
from rae_eval.shards import ShardStore

__all__ = ["GenerationReport", "generate_shards"]


@dataclasses.dataclass(frozen=True)
class GenerationReport:
    """What a call to :func:`generate_shards` did.

    Attributes:
      generated: shard numbers computed by this call.
      skipped: number of shards that already existed and were not recomputed.
      seconds: wall time of the call.
    """

    generated: tuple[int, ...]
    skipped: int
    seconds: float


def generate_shards(
    store: ShardStore,
    sample_batch: SampleBatch,
    labels: np.ndarray,
    *,
    batch_size: int,
    progress: bool = True,
    desc: str = "sampling",
) -> GenerationReport:
    """Generate the shards of ``store`` that do not exist yet.

    Args:
      store: where the shards go; existing shard files are kept as they are.
      sample_batch: ``(indices (B,) int64, labels (B,) int32) -> (B, H, W, 3) uint8``, called
        with exactly ``batch_size`` rows (the last batch of a shard is padded by repeating
        its last index; padded rows are dropped).
      labels: ``(num_samples,)`` int32 label of every global sample index.
      batch_size: rows per call (the global batch, a multiple of the device count).
      progress: show a tqdm bar over samples.
      desc: the bar's label.

    Returns:
      :class:`GenerationReport`.
    """
    if labels.shape != (store.num_samples,):
        raise ValueError(
            f"need one label per sample: labels {labels.shape}, num_samples {store.num_samples}"
        )
    start = time.perf_counter()
    missing = store.missing_shards()
    done = sum(len(store.shard_range(s)) for s in range(store.num_shards) if s not in set(missing))
    bar = tqdm(total=store.num_samples, initial=done, unit="img", desc=desc, disable=not progress)
    with bar:
        for shard in missing:
            indices = np.asarray(store.shard_range(shard), np.int64)
            chunks = sample_in_batches(
                sample_batch, labels, batch_size=batch_size, indices=indices, bar=bar
            )
            store.write(shard, np.concatenate(list(chunks)), labels[indices])
    return GenerationReport(
        generated=tuple(missing),
        skipped=store.num_shards - len(missing),
        seconds=time.perf_counter() - start,
    )
