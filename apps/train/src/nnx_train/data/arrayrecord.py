"""Map-style source over ArrayRecord files of ``tf.train.Example`` records (TFDS layout).

ArrayRecord (google/array_record) stores records with an index, so Grain reads any record by
position; ``grain.sources.ArrayRecordDataSource`` does the reading. Each record is a
serialized ``tf.train.Example`` (`nnx_train.data.example_proto`, no TensorFlow) with

- ``image_key`` (default ``"image"``): bytes, an encoded image (`PixelCodec`) or a ``.npy``
  latent (`LatentCodec`);
- ``label_key`` (default ``"label"``): int64 class label.

This is the layout TFDS writes for ``imagenet2012`` (``tfds build imagenet2012
--file_format=array_record``: ``<data_dir>/imagenet2012/5.*/imagenet2012-train.array_record-
00000-of-01024``, features ``image``, ``label``, ``file_name``), so such a folder is read as
it is (``path=<data_dir>/imagenet2012/5.1.0``, ``split="train"``), and files written with
`encode_example` share the reader. The per-host split happens in ``make_iterator``.
"""

from __future__ import annotations

import bisect
import glob
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nnx_train.data.codecs import Codec
from nnx_train.data.example_proto import ExampleError, parse_example
from nnx_train.errors import DataError

__all__ = ["ArrayRecordSource", "list_array_record_files"]


def list_array_record_files(path: str, split: str = "") -> list[str]:
    """The ArrayRecord files of ``path``, sorted.

    Args:
      path: a folder, one file, or a glob pattern.
      split: in a folder, keep files named ``*-<split>.array_record*`` (TFDS naming);
        ``""`` keeps every ``*.array_record*`` file.

    Raises:
      DataError: the path does not exist or holds no matching file.
    """
    if os.path.isdir(path):
        pattern = f"*-{split}.array_record*" if split else "*.array_record*"
        files = sorted(glob.glob(os.path.join(path, pattern)))
    elif os.path.isfile(path):
        files = [path]
    else:
        files = sorted(glob.glob(path))
        if not files:
            raise DataError(
                f"ArrayRecord path {path!r} does not exist; set data.path to a folder, a file "
                "or a glob of .array_record files."
            )
    if not files:
        wanted = f"*-{split}.array_record*" if split else "*.array_record*"
        raise DataError(
            f"No {wanted} files in {path!r}; set data.split to the split in the file names "
            "(TFDS: 'train', 'validation') or '' for all."
        )
    return files


def _count_records(path: str) -> int:
    from array_record.python.array_record_module import ArrayRecordReader

    try:
        reader = ArrayRecordReader(path)
        count = int(reader.num_records())
        reader.close()
        return count
    except Exception as err:  # noqa: BLE001 - the C++ reader raises RuntimeError/ValueError
        raise DataError(
            f"Cannot read ArrayRecord file {path} ({type(err).__name__}: {err}); it is "
            "truncated or not an ArrayRecord file: re-copy or remove it."
        ) from err


class ArrayRecordSource:
    """Random-access source (Grain protocol) over ArrayRecord ``tf.train.Example`` records.

    Records are ``{"x": (R, R, 3) uint8 | (H, W, C) float32 latent, "y": int32 label}``
    (`augment` flips pixels or samples latents, per the codec).
    """

    def __init__(
        self,
        *,
        path: str,
        codec: Codec,
        num_classes: int,
        split: str = "",
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        """Args:
        path: folder, file or glob of ArrayRecord files (see `list_array_record_files`).
        codec: what the ``image_key`` bytes hold (`PixelCodec` or `LatentCodec`).
        num_classes: labels must lie in ``[0, num_classes)``.
        split: TFDS split name in the file names, or ``""`` for all files.
        image_key: feature holding the encoded image or latent.
        label_key: int64 feature holding the label.

        Raises:
          DataError: missing files, an unreadable file, no records, or a first record
            without the two features.
        """
        self.path = str(path)
        self.codec = codec
        self.num_classes = int(num_classes)
        self.image_key, self.label_key = image_key, label_key
        self.files = list_array_record_files(self.path, split)
        with ThreadPoolExecutor(max_workers=16) as pool:  # opening 1024 files on GCS
            counts = list(pool.map(_count_records, self.files))
        self._ends = list(np.cumsum(counts))
        if not self._ends or self._ends[-1] == 0:
            raise DataError(
                f"The ArrayRecord files of {self.path!r} hold no records; point data.path at "
                "the prepared data set."
            )
        import grain

        # "path[start:end]" read instructions: Grain does not reopen every file to count.
        instructions = [f"{name}[0:{count}]" for name, count in zip(self.files, counts)]
        self._records = grain.sources.ArrayRecordDataSource(instructions)
        first = self._features(0)
        self.shape = tuple(self.codec.shape(first[0], self._describe(0)))

    def _describe(self, index: int) -> str:
        file_index = bisect.bisect_right(self._ends, index)
        start = self._ends[file_index - 1] if file_index else 0
        return f"record {index - start} of {self.files[file_index]}"

    def _features(self, index: int) -> tuple[bytes, int]:
        try:
            features = parse_example(self._records[index])
        except ExampleError as err:
            raise DataError(
                f"Corrupt {self._describe(index)}: not a tf.train.Example ({err}); re-create "
                "the file."
            ) from err
        except Exception as err:  # noqa: BLE001 - the C++ reader raises RuntimeError
            raise DataError(
                f"Cannot read {self._describe(index)} ({type(err).__name__}: {err}); the file "
                "is truncated or corrupt: re-copy it."
            ) from err
        image, label = features.get(self.image_key), features.get(self.label_key)
        if not image or not label or not isinstance(label[0], int):
            raise DataError(
                f"{self._describe(index)} has features {sorted(features)}; expected bytes "
                f"{self.image_key!r} and int64 {self.label_key!r}: set data.image_key and "
                "data.label_key."
            )
        if not 0 <= label[0] < self.num_classes:
            raise DataError(
                f"Label out of range: {self._describe(index)} has label {label[0]}, but "
                f"data.num_classes={self.num_classes}. Set data.num_classes and "
                "model.num_classes."
            )
        return image[0], label[0]

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        payload, label = self._features(int(index))
        return {"x": self.codec.decode(payload, self._describe(int(index))), "y": np.int32(label)}

    def augment(self, record: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
        """The codec's per-epoch augmentation (flips or the latent posterior sample)."""
        return self.codec.augment(record, rng)

    def __repr__(self) -> str:
        return (
            f"ArrayRecordSource({self.path!r}, files={len(self.files)}, len={len(self)}, "
            f"shape={self.shape})"
        )
