"""Streaming reader of WebDataset tar shards with a per-host shard split and exact resume.

Host ``i`` of ``n`` reads the shards ``shards[i::n]`` (each record is read by one host, once
per epoch) and yields its ``global_batch_size // n`` rows of every global batch, forever.
Epoch ``e`` visits this host's shards in an order drawn from ``(seed, e)``, and shuffles
records within windows of ``shuffle_buffer`` consecutive records, each permuted by
``(seed, e, window)`` (Grain's window shuffle; webdataset's reservoir buffer cannot be
checkpointed without saving its contents). Augmentations draw from
``(seed, host, e, window, slot)``. The order is therefore a function of the seed and the
position ``(epoch, window, first shard and record of the window, offset in the window)``,
which is the iterator state: `WebDatasetIterator.get_state` returns it as JSON-able ints and
`set_state` re-reads the window (skipping earlier records by their tar headers only), so a
resumed run continues with exactly the batches it would have seen. The iterator is a
``grain.DatasetIterator``, so ``grain.checkpoint.CheckpointSave`` stores it as it stores
the map-style pipeline (``process_<i>-of-<n>.json``).

Samples hold ``{key}.jpg|jpeg|png|webp`` (pixels, `PixelCodec`) or ``{key}.npy`` (latents,
`LatentCodec`) and ``{key}.cls``; see `nnx_train.data.tarshards` for the conventions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grain
import numpy as np

from nnx_train.data.codecs import Codec, LatentCodec
from nnx_train.data.pipeline import make_iterator
from nnx_train.data.tarshards import count_samples, expand_shards, read_samples
from nnx_train.errors import ConfigError, DataError

__all__ = ["WebDatasetIterator", "WebDatasetSource", "make_source_iterator"]

PIXEL_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LATENT_EXTENSIONS = ("npy",)
_STATE_KEYS = ("epoch", "window", "shard", "record", "offset", "num_shards")


def _payload(fields: dict[str, bytes], codec: Any, where: str) -> tuple[bytes, int]:
    """The image / latent bytes and the label of one sample."""
    wanted = LATENT_EXTENSIONS if isinstance(codec, LatentCodec) else PIXEL_EXTENSIONS
    payload = next((fields[e] for e in wanted if e in fields), None)
    if payload is None or "cls" not in fields:
        raise DataError(
            f"{where} has fields {sorted(fields)}; expected one of {wanted} and 'cls' "
            "(set data.content to 'pixels' or 'latents' to match the shards)."
        )
    try:
        return payload, int(fields["cls"].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{where}: .cls is not an integer ({err}); rewrite the shard.") from err


class WebDatasetSource:
    """WebDataset shards: ``shape`` and ``num_classes`` for the app, and `make_iterator`.

    Not map-style: training reads it through `make_iterator`. ``source[i]`` reads the
    ``i``-th sample in shard order (for previews; linear in ``i``).
    """

    def __init__(
        self,
        *,
        path: str,
        codec: Codec,
        num_classes: int,
        shuffle_buffer: int = 1000,
    ) -> None:
        """Args:
        path: folder of ``.tar`` shards, glob or brace range (`tarshards.expand_shards`).
        codec: what the samples hold (`PixelCodec` or `LatentCodec`).
        num_classes: labels must lie in ``[0, num_classes)``.
        shuffle_buffer: records per shuffle window (memory: this many encoded records).

        Raises:
          DataError: no shards, an unreadable first shard, or a first sample without the
            expected fields.
        """
        if shuffle_buffer < 1:
            raise ConfigError(f"data.shuffle_buffer={shuffle_buffer}; use 1 or more records.")
        self.path = str(path)
        self.codec = codec
        self.num_classes = int(num_classes)
        self.shuffle_buffer = int(shuffle_buffer)
        self.shards = expand_shards(self.path)
        key, fields = next(read_samples(self.shards[0]), (None, None))
        if key is None:
            raise DataError(f"WebDataset shard {self.shards[0]} holds no samples; remove it.")
        where = f"sample {key} of {self.shards[0]}"
        self.shape = tuple(self.codec.shape(_payload(fields, codec, where)[0], where))
        self._length: int | None = None

    def record(self, key: str, fields: dict[str, bytes], shard: str) -> dict[str, np.ndarray]:
        """Decodes one sample into ``{"x", "y"}`` (before augmentation)."""
        where = f"sample {key} of {shard}"
        payload, label = _payload(fields, self.codec, where)
        if not 0 <= label < self.num_classes:
            raise DataError(
                f"Label out of range: {where} has label {label}, but data.num_classes="
                f"{self.num_classes}. Set data.num_classes and model.num_classes."
            )
        return {"x": self.codec.decode(payload, where), "y": np.int32(label)}

    def __len__(self) -> int:
        if self._length is None:  # reads every tar header once
            self._length = sum(count_samples(s) for s in self.shards)
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        samples = ((k, f, s) for s in self.shards for k, f in read_samples(s))
        for key, fields, shard in itertools.islice(samples, int(index), None):
            return self.record(key, fields, shard)
        raise IndexError(f"{self!r} has fewer than {int(index) + 1} samples.")

    def make_iterator(
        self,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        read_threads: int = 4,
        prefetch_batches: int = 4,
    ) -> grain.DatasetIterator:
        """A checkpointable iterator of host-local batches ``{"x": (b, ...), "y": (b,)}``.

        Args: as `nnx_train.data.make_iterator`; ``read_threads`` decode the images of a
        batch in parallel and ``prefetch_batches`` are prepared in a background thread.

        Raises:
          ConfigError: the global batch is not positive or does not divide among hosts.
          DataError: this host gets no shard.
        """
        if global_batch_size <= 0 or global_batch_size % process_count:
            raise ConfigError(
                f"train.batch_size={global_batch_size} must be a positive multiple of the "
                f"{process_count} hosts."
            )
        shards = self.shards[process_index::process_count]
        if not shards:
            raise DataError(
                f"Process {process_index} of {process_count} gets no WebDataset shard: "
                f"{self.path!r} has only {len(self.shards)} shards. Re-shard the data into at "
                f"least {process_count} shards (a multiple of {process_count} balances hosts)."
            )
        stream = _WebDatasetStream(
            self, shards, global_batch_size // process_count, seed, process_index, read_threads
        )
        if prefetch_batches <= 0:
            return iter(stream)
        return iter(
            grain.experimental.ThreadPrefetchIterDataset(
                stream, prefetch_buffer_size=prefetch_batches
            )
        )

    def __repr__(self) -> str:
        return f"WebDatasetSource({self.path!r}, shards={len(self.shards)}, shape={self.shape})"


class _WebDatasetStream(grain.IterDataset):
    """The host's batches as a Grain ``IterDataset`` (parentless; see the module doc)."""

    def __init__(self, source, shards, host_batch, seed, process_index, threads) -> None:
        super().__init__()
        self.source, self.shards, self.host_batch = source, list(shards), int(host_batch)
        self.seed, self.process_index, self.threads = int(seed), int(process_index), threads

    def __iter__(self) -> WebDatasetIterator:
        return WebDatasetIterator(self)


class WebDatasetIterator(grain.DatasetIterator):
    """Host-local batches of a `WebDatasetSource`; state: see the module doc."""

    def __init__(self, stream: _WebDatasetStream) -> None:
        super().__init__()
        self._stream = stream
        self._pool = ThreadPoolExecutor(max_workers=max(1, stream.threads))
        self._seek({**{k: 0 for k in _STATE_KEYS}, "num_shards": len(stream.shards)})

    # -- position ------------------------------------------------------------------------
    def _shard_order(self, epoch: int) -> list[str]:
        order = np.random.default_rng([self._stream.seed, epoch]).permutation(
            len(self._stream.shards)
        )
        return [self._stream.shards[i] for i in order]

    def _records(self, epoch: int, shard: int, record: int) -> Iterator[tuple]:
        """``(shard index, record index, key, fields, shard path)`` from a position on."""
        order = self._shard_order(epoch)
        for index in range(shard, len(order)):
            skip = record if index == shard else 0
            for number, (key, fields) in enumerate(read_samples(order[index], skip=skip)):
                yield index, skip + number, key, fields, order[index]

    def _seek(self, state: dict[str, int]) -> None:
        if int(state["num_shards"]) != len(self._stream.shards):
            raise DataError(
                f"The saved data position is for {state['num_shards']} shards on process "
                f"{self._stream.process_index}, but it now reads {len(self._stream.shards)}; "
                "resume with the same shards and process count, or use a new --workdir."
            )
        self._epoch, self._window_index = int(state["epoch"]), int(state["window"])
        self._reader = self._records(self._epoch, int(state["shard"]), int(state["record"]))
        self._fill()
        self._offset = int(state["offset"])

    def _fill(self) -> None:
        """Reads the next window of the epoch (the next epoch's first when this one ends)."""
        size = self._stream.source.shuffle_buffer
        window = list(itertools.islice(self._reader, size))
        if not window:
            self._epoch, self._window_index = self._epoch + 1, 0
            self._reader = self._records(self._epoch, 0, 0)
            window = list(itertools.islice(self._reader, size))
        if not window:
            raise DataError(
                f"The WebDataset shards of process {self._stream.process_index} hold no "
                f"samples ({len(self._stream.shards)} shards); remove the empty shards."
            )
        self._start = (window[0][0], window[0][1])
        rng = np.random.default_rng([self._stream.seed, self._epoch, self._window_index])
        self._window = [window[i] for i in rng.permutation(len(window))]
        self._offset = 0

    def _take(self) -> tuple[tuple, tuple[int, ...]]:
        if self._offset == len(self._window):
            self._window_index += 1
            self._fill()
        slot = self._offset
        self._offset += 1
        stream = self._stream
        rng_key = (stream.seed + 1, stream.process_index, self._epoch, self._window_index, slot)
        return self._window[slot], rng_key

    # -- grain.DatasetIterator -----------------------------------------------------------
    def __next__(self) -> dict[str, np.ndarray]:
        samples = [self._take() for _ in range(self._stream.host_batch)]
        records = list(self._pool.map(self._decode, samples))
        return {
            "x": np.stack([r["x"] for r in records]),
            "y": np.asarray([r["y"] for r in records], np.int32),
        }

    def _decode(self, sample: tuple[tuple, tuple[int, ...]]) -> dict[str, np.ndarray]:
        (_, _, key, fields, shard), rng_key = sample
        source = self._stream.source
        record = source.record(key, fields, shard)
        return source.codec.augment(record, np.random.default_rng(rng_key))

    def get_state(self) -> dict[str, int]:
        """``{"epoch", "window", "shard", "record", "offset", "num_shards"}``: ints (JSON)."""
        shard, record = self._start
        return {
            "num_shards": len(self._stream.shards),
            "epoch": self._epoch,
            "window": self._window_index,
            "shard": shard,
            "record": record,
            "offset": self._offset,
        }

    def set_state(self, state: dict[str, int]) -> None:
        """Continues from a `get_state` result (same shards, hosts and seed)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise DataError(
                f"The saved data-iterator state {state} lacks {missing}: it was written by "
                "another reader; resume with the data.name that wrote it or a new --workdir."
            )
        self._seek(state)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        super().close()


def make_source_iterator(source: Any, **options: Any) -> Any:
    """The training iterator of any source: streaming sources (`WebDatasetSource`) build
    their own, map-style ones go through `nnx_train.data.make_iterator`.

    Args:
      source: a `RecordSource` or a source with a ``make_iterator(**options)`` method.
      **options: the keyword arguments of `nnx_train.data.make_iterator`. Streaming sources
        take ``batch_rows`` only when it is the default block ``[p * b, (p + 1) * b)``.

    Raises:
      ConfigError: a streaming source and a mesh that gives this process other rows.
    """
    streaming = getattr(source, "make_iterator", None)
    if streaming is None:
        return make_iterator(source, **options)
    rows = options.pop("batch_rows", None)
    count, index = options.get("process_count", 1), options.get("process_index", 0)
    local = options["global_batch_size"] // count
    if rows is not None and list(rows) != list(range(index * local, (index + 1) * local)):
        raise ConfigError(
            f"{type(source).__name__} streams {local} rows per process, but this mesh places "
            f"{len(rows)} rows of the batch on process {index}, not a block of {local}; use a "
            "mesh whose data/fsdp axes span the processes in order (the default), or a "
            "map-style source."
        )
    return streaming(**options)
