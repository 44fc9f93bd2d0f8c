"""Encoded images and labels of any image source, split over processes (for tools).

``tools/extract_latents.py`` decodes and encodes images itself; it needs each record's
stored bytes and label, with a global index, from an ImageFolder, ArrayRecord files or
WebDataset shards, and a split of the work over processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from nnx_train.data.arrayrecord import ArrayRecordSource
from nnx_train.data.codecs import EncodedBytes
from nnx_train.data.imagefolder import list_image_folder
from nnx_train.data.tarshards import count_samples, read_samples
from nnx_train.data.webdataset import WebDatasetSource
from nnx_train.errors import ConfigError

__all__ = ["IMAGE_FORMATS", "EncodedImages"]

IMAGE_FORMATS = ("imagefolder", "arrayrecord", "webdataset")


def _reader(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    return read


class EncodedImages:
    """Encoded images of an ImageFolder, ArrayRecord files or WebDataset shards.

    Records have a global index ``0..len-1`` (folder order, file order, shard order). Process
    ``p`` of ``n`` takes indices ``p::n`` (ImageFolder, ArrayRecord: random access) or the
    records of the shards ``shards[p::n]`` (WebDataset: streamed).

    Args:
      image_format: one of `IMAGE_FORMATS`.
      path: the folder / files / shards (as the training sources take them).
      num_classes: ArrayRecord and WebDataset labels must lie below it.
      split: ArrayRecord split in the file names (TFDS: ``"train"``), ``""`` for all.
    """

    def __init__(self, image_format: str, path: str, *, num_classes: int, split: str = "") -> None:
        self.format, self.path = image_format, str(path)
        self._counts: list[int] | None = None
        match image_format:
            case "imagefolder":
                self._files, self._labels, _ = list_image_folder(self.path)
            case "arrayrecord":
                self._source = ArrayRecordSource(
                    path=self.path, split=split, codec=EncodedBytes(), num_classes=num_classes
                )
            case "webdataset":
                self._source = WebDatasetSource(
                    path=self.path, codec=EncodedBytes(), num_classes=num_classes
                )
                self._counts = [count_samples(s) for s in self._source.shards]  # headers only
            case _:
                raise ConfigError(
                    f"Unknown image format {image_format!r}; valid names: "
                    f"{', '.join(IMAGE_FORMATS)}."
                )

    def __len__(self) -> int:
        if self._counts is not None:
            return sum(self._counts)
        return len(self._files) if self.format == "imagefolder" else len(self._source)

    def count(self, process_index: int, process_count: int) -> int:
        """Number of records of one process."""
        if self._counts is not None:
            return sum(self._counts[process_index::process_count])
        return len(range(process_index, len(self), process_count))

    def records(
        self, process_index: int, process_count: int
    ) -> Iterator[tuple[int, int, Callable[[], bytes]]]:
        """Yields ``(index, label, read)`` of one process; ``read()`` returns the bytes."""
        if self.format == "imagefolder":
            for i in range(process_index, len(self), process_count):
                yield i, int(self._labels[i]), _reader(os.path.join(self.path, self._files[i]))
        elif self.format == "arrayrecord":
            for i in range(process_index, len(self), process_count):
                record = self._source[i]
                yield i, int(record["y"]), lambda payload=record["x"]: payload
        else:
            starts = np.cumsum([0, *self._counts])
            for s in range(process_index, len(self._counts), process_count):
                shard = self._source.shards[s]
                for position, (key, fields) in enumerate(read_samples(shard)):
                    record = self._source.record(key, fields, shard)
                    yield int(starts[s]) + position, int(record["y"]), lambda p=record["x"]: p
