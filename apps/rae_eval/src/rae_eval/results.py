"""Writing results: a JSON record of metrics with every knob that moves them, and a sample grid PNG."""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping

import numpy as np
from PIL import Image

from rae_eval.shards import atomic_write_bytes

__all__ = ["image_grid", "save_grid", "write_json"]


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN / inf
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_json(path: str | pathlib.Path, record: Mapping) -> pathlib.Path:
    """Write ``record`` as indented JSON, atomically; numpy values become plain numbers.

    Non-finite floats are written as the strings ``"nan"`` / ``"inf"`` (JSON has no literal).
    """
    path = pathlib.Path(path)
    text = json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def image_grid(images: np.ndarray, *, columns: int, padding: int = 2) -> np.ndarray:
    """Tile ``(N, H, W, 3)`` uint8 images row-major into one ``(rows*(H+p)+p, cols*(W+p)+p, 3)``.

    Empty cells of the last row and the ``padding``-pixel gutters are black.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"need uint8 (N>0, H, W, C) images, got {images.dtype} {images.shape}")
    count, height, width, channels = images.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    grid = np.zeros(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        np.uint8,
    )
    for index in range(count):
        row, col = divmod(index, columns)
        top = padding + row * (height + padding)
        left = padding + col * (width + padding)
        grid[top : top + height, left : left + width] = images[index]
    return grid


def save_grid(path: str | pathlib.Path, images: np.ndarray, *, columns: int) -> pathlib.Path:
    """Save :func:`image_grid` of ``images`` as a PNG at ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image_grid(images, columns=columns)).save(path)
    return path
