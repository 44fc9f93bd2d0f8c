"""Tiny ArrayRecord and WebDataset data sets that the reader tests write themselves."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np

from nnx_train.data import encode_example


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 ``(H, W, 3)`` -> PNG bytes (lossless, so decoded pixels are known exactly)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def id_latent(record_id: int, shape=(2, 2, 2)) -> np.ndarray:
    """A ``(C, H, W)`` latent whose every value is ``record_id``: the id survives decoding
    (posterior ``"sample"``, shift 0, scale 1), so batches show which records they hold."""
    return np.full(shape, float(record_id), np.float32)


def write_arrayrecord(path: str, examples: list[dict]) -> None:
    """One ArrayRecord file of ``encode_example(e)`` records, group size 1 as TFDS writes."""
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(str(path), "group_size:1")
    for example in examples:
        writer.write(encode_example(example))
    writer.close()


def write_shard(path: str, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """One WebDataset tar shard: member ``{key}.{ext}`` per field of each sample."""
    with tarfile.open(path, "w") as archive:
        for key, fields in samples:
            for extension, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def write_id_shards(folder, counts: list[int]) -> list[int]:
    """Shards ``shard-000000.tar`` ... holding ``counts[i]`` id latents each; returns all ids."""
    os.makedirs(folder, exist_ok=True)
    next_id = 0
    for index, count in enumerate(counts):
        samples = [
            (f"s{i:05d}", {"npy": npy_bytes(id_latent(i)), "cls": str(i % 7).encode()})
            for i in range(next_id, next_id + count)
        ]
        write_shard(os.path.join(folder, f"shard-{index:06d}.tar"), samples)
        next_id += count
    return list(range(next_id))
